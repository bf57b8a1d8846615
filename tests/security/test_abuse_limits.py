"""Limits that keep one user from exhausting the service: active-order cap, interval floor, page sizes."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orders.models import Order, OrderStatus
from tests.conftest import api_client_for, make_user
from tests.security.conftest import assert_field_error, make_order, valid_payload

pytestmark = pytest.mark.django_db


def test_the_active_order_cap_refuses_one_more(
    alice: Any, alice_api: APIClient, bob_api: APIClient, settings: Any
) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 3
    for n in range(3):
        assert alice_api.post("/api/orders/", valid_payload(order_name=f"o{n}"), format="json").status_code == 201

    response = alice_api.post("/api/orders/", valid_payload(order_name="one too many"), format="json")
    assert_field_error(response, "non_field_errors")
    assert "at most 3 active orders" in response.json()["non_field_errors"][0]
    assert Order.objects.filter(user=alice).count() == 3
    # The cap is per user: another user is not affected.
    assert bob_api.post("/api/orders/", valid_payload(), format="json").status_code == 201


def test_paused_orders_do_not_count_but_resuming_past_the_cap_is_refused(
    alice: Any, alice_api: APIClient, settings: Any
) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 2
    first = alice_api.post("/api/orders/", valid_payload(), format="json").json()["order_id"]
    alice_api.post("/api/orders/", valid_payload(), format="json")
    assert alice_api.post(f"/api/orders/{first}/pause/").status_code == 200
    assert alice_api.post("/api/orders/", valid_payload(), format="json").status_code == 201

    response = alice_api.post(f"/api/orders/{first}/resume/")
    assert_field_error(response, "non_field_errors")
    assert Order.objects.get(pk=first).status == OrderStatus.PAUSED


def test_reviving_a_finished_order_past_the_cap_is_refused(alice: Any, alice_api: APIClient, settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 1
    done = make_order(alice)
    Order.objects.filter(pk=done.pk).update(status=OrderStatus.COMPLETED, next_run_at=None, job_id="")
    make_order(alice, order_name="active")
    response = alice_api.patch(f"/api/orders/{done.pk}/", valid_payload(), format="json")
    assert_field_error(response, "non_field_errors")
    assert Order.objects.get(pk=done.pk).status == OrderStatus.COMPLETED


@pytest.mark.parametrize(
    ("interval", "unit", "accepted"),
    [(59, "seconds", False), (60, "seconds", True), (1, "minutes", True), (1, "seconds", False)],
)
def test_the_interval_floor(alice_api: APIClient, settings: Any, interval: int, unit: str, accepted: bool) -> None:
    settings.ORDER_MIN_INTERVAL_SECONDS = 60
    response = alice_api.post("/api/orders/", valid_payload(repeat_interval=interval, repeat_unit=unit), format="json")
    if accepted:
        assert response.status_code == 201, response.json()
    else:
        assert_field_error(response, "repeat_interval")
        assert "at least 60 seconds" in response.json()["repeat_interval"][0]


def test_the_interval_floor_applies_to_updates(alice: Any, alice_api: APIClient, settings: Any) -> None:
    order = make_order(alice, is_recurring=True, repeat_interval=1, repeat_unit="hours")
    settings.ORDER_MIN_INTERVAL_SECONDS = 60
    response = alice_api.patch(
        f"/api/orders/{order.pk}/", {"repeat_interval": 5, "repeat_unit": "seconds"}, format="json"
    )
    assert_field_error(response, "repeat_interval")
    order.refresh_from_db()
    assert (order.repeat_interval, order.repeat_unit) == (1, "hours")


def test_list_pages_default_and_cap(alice: Any, alice_api: APIClient, settings: Any) -> None:
    for n in range(5):
        make_order(alice, order_name=f"o{n}")
    settings.API_PAGE_SIZE = 2
    settings.API_MAX_PAGE_SIZE = 4

    first = alice_api.get("/api/orders/").json()
    assert first["count"] == 5 and len(first["results"]) == 2 and first["next"]
    assert len(alice_api.get("/api/orders/", {"page_size": 4}).json()["results"]) == 4
    assert len(alice_api.get("/api/orders/", {"page": 3}).json()["results"]) == 1

    response = alice_api.get("/api/orders/", {"page_size": 5})
    assert_field_error(response, "page_size")
    assert response.json()["page_size"] == ["At most 4."]


def test_the_default_cap_bounds_a_huge_request(alice: Any, alice_api: APIClient, settings: Any) -> None:
    response = alice_api.get("/api/orders/", {"page_size": settings.API_MAX_PAGE_SIZE + 1})
    assert_field_error(response, "page_size")
    assert alice_api.get("/api/orders/", {"page_size": settings.API_MAX_PAGE_SIZE}).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_parallel_creates_cannot_exceed_the_cap(settings: Any) -> None:
    settings.ORDER_MAX_ACTIVE_PER_USER = 3
    user = make_user()
    barrier = threading.Barrier(12)
    codes: list[int] = []

    def create() -> None:
        client = api_client_for(user)
        barrier.wait()
        try:
            codes.append(client.post("/api/orders/", valid_payload(), format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [201] * 3 + [400] * 9
    assert Order.objects.filter(user=user).count() == 3
