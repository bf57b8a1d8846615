"""Server-owned fields (owner, id, status, counters, job id, next run) are ignored when a client sends them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from orders.models import Order, OrderStatus
from tests.security.conftest import future, make_order, valid_payload

pytestmark = pytest.mark.django_db


def _server_owned(bob: Any, other_order: Order) -> dict[str, Any]:
    return {
        "user": bob.pk,
        "user_id": bob.pk,
        "order_id": other_order.pk,
        "id": other_order.pk,
        "pk": other_order.pk,
        "status": "completed",
        "executions_count": 999,
        "executions_remaining": 999,
        "job_id": "forged-job",
        "next_run_at": "2031-01-01T00:00:00Z",
        "last_run_at": "2020-01-01T00:00:00Z",
        "last_result": "succeeded",
        "schedule_version": 77,
        "execution_limit": 10**6,
        "created_at": "2000-01-01T00:00:00Z",
    }


def test_create_ignores_server_owned_fields_and_the_caller_owns_the_order(
    alice: Any, alice_api: APIClient, bob: Any
) -> None:
    bobs = make_order(bob)
    due = future(7200).replace(microsecond=0)
    body = {**valid_payload(schedule_time=due.isoformat()), **_server_owned(bob, bobs)}
    response = alice_api.post("/api/orders/", body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    order = Order.objects.get(pk=data["order_id"])
    assert order.pk != bobs.pk
    assert order.user_id == alice.pk
    assert data["user_id"] == alice.pk
    assert order.status == OrderStatus.SCHEDULED
    assert order.executions_count == 0
    assert order.job_id != "forged-job" and order.job_id
    assert order.next_run_at == due
    assert order.last_run_at is None and order.last_result == ""
    assert order.schedule_version == 1
    assert order.execution_limit == 3
    assert order.created_at > datetime(2026, 1, 1, tzinfo=UTC)
    bobs.refresh_from_db()
    assert bobs.user_id == bob.pk and bobs.order_name == "restock"


@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_ignores_server_owned_fields(alice: Any, alice_api: APIClient, bob: Any, method: str) -> None:
    bobs = make_order(bob)
    mine = make_order(alice, order_name="mine", is_recurring=True, repeat_interval=1, repeat_unit="days")
    before = Order.objects.get(pk=mine.pk)
    payload = valid_payload(order_name="renamed") if method == "put" else {"order_name": "renamed"}
    response = getattr(alice_api, method)(
        f"/api/orders/{mine.pk}/", {**payload, **_server_owned(bob, bobs)}, format="json"
    )
    assert response.status_code == 200, response.json()
    after = Order.objects.get(pk=mine.pk)
    assert after.order_name == "renamed"
    assert after.user_id == alice.pk
    assert after.status == OrderStatus.SCHEDULED
    assert after.executions_count == 0
    assert after.job_id != "forged-job"
    assert after.last_result == "" and after.last_run_at is None
    assert after.created_at == before.created_at
    assert Order.objects.filter(user=bob).count() == 1
    assert Order.objects.filter(user=alice).count() == 1


def test_patch_with_only_server_owned_fields_changes_nothing(alice: Any, alice_api: APIClient, bob: Any) -> None:
    mine = make_order(alice)
    before = dict(Order.objects.filter(pk=mine.pk).values().get())
    response = alice_api.patch(f"/api/orders/{mine.pk}/", _server_owned(bob, mine), format="json")
    assert response.status_code == 200, response.json()
    after = dict(Order.objects.filter(pk=mine.pk).values().get())
    before.pop("updated_at"), after.pop("updated_at")
    assert after == before
