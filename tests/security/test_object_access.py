"""No one reaches what is not theirs: another user's objects, and ids that cannot exist, are a JSON 404."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from orders.models import Execution, ExecutionStatus, Notification, Order
from tests.security.conftest import ORDER_ENDPOINTS, assert_json_404, make_order, valid_payload

pytestmark = pytest.mark.django_db

NOTIFICATION_ENDPOINTS: list[tuple[str, str]] = [("post", "/api/notifications/{id}/read/")]
IMPOSSIBLE_IDS = [
    "abc",
    "-1",
    "0",
    "1e100",
    "99999999999",
    "9" * 40,
    "1.0",
    "%201",
    "0x10",
    "%00",
    "\u0661",
    "\u00b2",
    "%C2%B2%C2%B9",
]


def _call(client: APIClient, method: str, url: str) -> Any:
    if method in ("put", "patch"):
        # A perfectly valid body: only ownership can make the request fail.
        return getattr(client, method)(url, valid_payload(order_name="hijacked"), format="json")
    return getattr(client, method)(url)


def _snapshot(order: Order) -> dict[str, Any]:
    order.refresh_from_db()
    return {f: getattr(order, f) for f in ("order_name", "status", "schedule_version", "job_id", "executions_count")}


@pytest.mark.parametrize(("method", "path"), ORDER_ENDPOINTS)
@pytest.mark.parametrize("slash", [True, False])
def test_another_users_order_is_not_found_and_untouched(
    alice_api: APIClient, bob_order: Order, method: str, path: str, slash: bool
) -> None:
    Execution.objects.create(order=bob_order, occurrence=1, scheduled_for=bob_order.schedule_time, status="failed")
    before = _snapshot(bob_order)
    url = path.format(id=bob_order.pk)
    response = _call(alice_api, method, url if slash else url.rstrip("/"))
    assert_json_404(response)
    assert _snapshot(bob_order) == before
    assert Execution.objects.filter(order=bob_order).count() == 1
    assert Execution.objects.get(order=bob_order).status == ExecutionStatus.FAILED


@pytest.mark.parametrize(("method", "path"), ORDER_ENDPOINTS + NOTIFICATION_ENDPOINTS)
@pytest.mark.parametrize("raw_id", IMPOSSIBLE_IDS)
def test_impossible_ids_are_not_found(
    alice_api: APIClient, alice_order: Order, method: str, path: str, raw_id: str
) -> None:
    assert_json_404(_call(alice_api, method, path.format(id=raw_id)))


def test_another_users_notification_cannot_be_marked_read(alice_api: APIClient, bob: Any, bob_order: Order) -> None:
    note = Notification.objects.create(user=bob, order=bob_order, kind="completed", message="bob's news")
    assert_json_404(alice_api.post(f"/api/notifications/{note.pk}/read/"))
    note.refresh_from_db()
    assert note.read_at is None


def test_lists_show_only_the_callers_objects(alice: Any, alice_api: APIClient, bob: Any, bob_order: Order) -> None:
    mine = make_order(alice, order_name="mine")
    Notification.objects.create(user=bob, order=bob_order, kind="completed", message="bob's news")
    Notification.objects.create(user=alice, order=mine, kind="completed", message="alice's news")

    orders = alice_api.get("/api/orders/", {"search": "order"}).json()
    assert [o["order_id"] for o in orders["results"]] == []
    orders = alice_api.get("/api/orders/").json()
    assert [o["order_id"] for o in orders["results"]] == [mine.pk]
    notes = alice_api.get("/api/notifications/").json()
    assert [n["message"] for n in notes["results"]] == ["alice's news"]


def test_the_owner_still_reaches_the_order(alice_api: APIClient, alice_order: Order) -> None:
    # The 404s above come from ownership, not from a broken route.
    response = alice_api.get(f"/api/orders/{alice_order.pk}/")
    assert response.status_code == 200
    assert response.json()["order_name"] == "alice's order"
    assert alice_api.get(f"/api/orders/{alice_order.pk}/executions/").status_code == 200
    assert alice_api.get(f"/api/orders/{alice_order.pk}/upcoming/").status_code == 200
