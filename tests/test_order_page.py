"""The list endpoint's fast path (hand-written page query and hand-built JSON) against the ORM and
OrderSerializer it replaces: the same rows, order, totals and JSON, field by field."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rest_framework.test import APIClient

from orders import selectors
from orders.api.representation import order_as_json
from orders.api.serializers import OrderSerializer
from orders.models import Order, OrderStatus
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db

BASE = datetime(2031, 3, 30, 0, 30, tzinfo=UTC)  # the night Europe/Berlin springs forward


def _orders(user: Any) -> list[Order]:
    """Orders covering every shape a field can take: zones (one unknown), nulls, whole seconds."""
    zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Mars/Olympus_Mons"]
    rows = []
    for i in range(23):
        recurring = i % 3 == 0
        rows.append(
            Order(
                user=user,
                order_name=[f"alpha {i}", f"Beta_{i}", f"100% \u03b3 {i}", f"ALPHA\\{i}"][i % 4],
                schedule_time=BASE + timedelta(hours=i, microseconds=0 if i % 2 else 123456),
                time_zone=zones[i % len(zones)],
                status=list(OrderStatus.values)[i % len(OrderStatus.values)],
                job_id="" if i % 4 == 0 else f"order-x-{i}",
                is_recurring=recurring,
                repeat_interval=i + 1 if recurring else None,
                repeat_unit="days" if recurring else None,
                max_executions=[None, 5][i % 2] if recurring else None,
                executions_count=i % 7,
                execution_limit=None if recurring and i % 2 == 0 else 3,
                next_run_at=None if i % 5 == 0 else BASE + timedelta(days=i, microseconds=i),
                last_run_at=None if i % 2 else BASE - timedelta(minutes=i),
                last_result=["", "succeeded", "failed"][i % 3],
            )
        )
    Order.objects.bulk_create(rows)
    # Distinct creation times (and two equal ones, so the id breaks the tie) for the default order.
    for i, order in enumerate(Order.objects.filter(user=user).order_by("id")):
        created = BASE - timedelta(days=30) + timedelta(seconds=i // 2 * 7, microseconds=(i * 37) % 3)
        Order.objects.filter(pk=order.pk).update(created_at=created, updated_at=created + timedelta(seconds=i))
    return list(Order.objects.filter(user=user))


@pytest.fixture
def owner() -> Any:
    user = make_user("owner@example.com")
    _orders(user)
    other = make_user("other@example.com")
    _orders(other)
    return user


def test_fast_json_equals_the_serializer_for_every_field(owner: Any) -> None:
    for order in Order.objects.filter(user=owner):
        assert order_as_json(order) == OrderSerializer(order).data
        # Same keys in the same order, so the JSON text is identical too.
        assert json.dumps(order_as_json(order)) == json.dumps(OrderSerializer(order).data)


def test_list_response_equals_the_serializer_output(owner: Any) -> None:
    listing = api_client_for(owner).get("/api/orders/?page_size=200").json()
    expected = OrderSerializer(Order.objects.filter(user=owner), many=True).data
    assert listing["results"] == expected
    assert listing["count"] == 23 and listing["next"] is None and listing["previous"] is None


def test_list_output_follows_each_orders_zone_not_the_sites(owner: Any, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"
    results = api_client_for(owner).get("/api/orders/?page_size=200").json()["results"]
    assert results == OrderSerializer(Order.objects.filter(user=owner), many=True).data
    assert len({order["time_zone"] for order in results}) == 5
    for order in results:
        tz = UTC if order["time_zone"] == "Mars/Olympus_Mons" else ZoneInfo(order["time_zone"])
        for name in ("created_at", "updated_at"):
            moment = datetime.fromisoformat(order[name])
            assert moment.utcoffset() == moment.astimezone(tz).utcoffset(), (name, order)


FILTERS: list[dict[str, Any]] = [
    {"status": status, "is_recurring": recurring, "search": search}
    for status, recurring, search in itertools.product(
        [None, "scheduled", "failed"], [None, True, False], [None, "alpha", "ALPHA", "%", "_", "\\", "\u03b3", "zzz"]
    )
]


@pytest.mark.parametrize("ordering", [None, *sorted(selectors.ORDERINGS)])
def test_page_query_matches_the_queryset_for_every_filter_and_ordering(owner: Any, ordering: str | None) -> None:
    for filters in FILTERS:
        qs = selectors.order_list_for_user(user=owner, ordering=ordering, **filters)
        expected_ids = list(qs.values_list("id", flat=True))
        for offset, limit in ((0, 50), (0, 5), (5, 5), (20, 5), (40, 5)):
            rows, total = selectors.order_page_for_user(
                user=owner, offset=offset, limit=limit, ordering=ordering, **filters
            )
            assert [row[0] for row in rows] == expected_ids[offset : offset + limit], (filters, offset)
            assert total == (len(expected_ids) if rows else None), (filters, offset)


def test_page_rows_hold_the_same_values_as_the_model(owner: Any) -> None:
    rows, _ = selectors.order_page_for_user(user=owner, offset=0, limit=200)
    by_id = {order.pk: order for order in Order.objects.filter(user=owner)}
    for row in rows:
        order = by_id[row[0]]
        for name, value in zip(selectors.ORDER_ROW_COLUMNS, row, strict=True):
            expected = getattr(order, name)
            assert value == expected and type(value) is type(expected), (name, value, expected)


def test_paging_count_links_and_errors(owner: Any) -> None:
    client: APIClient = api_client_for(owner)
    first = client.get("/api/orders/?page_size=10").json()
    assert first["count"] == 23 and first["previous"] is None
    assert first["next"].endswith("/api/orders/?page=2&page_size=10")
    last = client.get("/api/orders/?page_size=10&page=last").json()
    assert last["count"] == 23 and len(last["results"]) == 3 and last["next"] is None
    assert last["results"] == client.get("/api/orders/?page_size=10&page=3").json()["results"]
    assert client.get("/api/orders/?page_size=10&page=4").status_code == 404
    assert client.get("/api/orders/?page_size=10&page=4").json() == {"detail": "Invalid page."}
    nobody = api_client_for(make_user())
    assert nobody.get("/api/orders/").json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert nobody.get("/api/orders/?page=last").json()["count"] == 0
    assert nobody.get("/api/orders/?page=2").status_code == 404


def test_single_order_responses_equal_the_serializer(alice: Any) -> None:
    client = api_client_for(alice)
    body = {"order_name": "x", "schedule_time": "2031-07-01T09:00:00", "time_zone": "Europe/Berlin"}
    created = client.post("/api/orders/", body, format="json")
    assert created.status_code == 201
    order_id = created.json()["order_id"]

    def expected() -> Any:
        return OrderSerializer(Order.objects.get(pk=order_id)).data

    assert created.json() == expected()
    assert client.get(f"/api/orders/{order_id}").json() == expected()
    change = {"is_recurring": True, "repeat_interval": 2, "repeat_unit": "hours"}
    patched = client.patch(f"/api/orders/{order_id}", change, format="json")
    assert patched.json() == expected() and patched.json()["repeat_unit"] == "hours"
    paused = client.post(f"/api/orders/{order_id}/pause")
    assert paused.json() == expected() and paused.json()["status"] == "paused"
