"""The list endpoint's fast path (hand-written page query and hand-built JSON) against the ORM and
OrderSerializer it replaces: the same rows, order, totals and JSON, field by field."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orders import selectors
from orders.api.representation import order_as_json, order_values, orders_as_json
from orders.api.serializers import OrderSerializer
from orders.models import Order, OrderStatus
from orders.sql import datetime_from_db_text, utc_isoformat_from_db_text
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
                end_at=BASE + timedelta(days=60 + i, microseconds=0 if i % 4 == 1 else 5)
                if recurring and i % 2
                else None,
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


TIME_COLUMNS = ("schedule_time", "end_at", "next_run_at", "last_run_at", "created_at", "updated_at")


def test_list_times_are_pinned_to_their_text_for_every_shape(alice: Any) -> None:
    """The list's times as text, on this backend: a UTC order's whole second and microseconds, a
    missing end and last run, and a Berlin order on each side of its spring-forward night."""
    whole = datetime(2031, 3, 30, 0, 30, tzinfo=UTC)
    micro = datetime(2031, 3, 30, 0, 30, 0, 123456, tzinfo=UTC)
    tiny = datetime(2031, 3, 30, 0, 30, 0, 1, tzinfo=UTC)
    before = datetime(2031, 3, 30, 0, 59, 59, tzinfo=UTC)  # 01:59:59 CET, the last second of winter time
    after = datetime(2031, 3, 30, 1, 0, 0, 500000, tzinfo=UTC)  # 03:00:00.5 CEST
    definitions = {
        "a utc whole": {"time_zone": "UTC", "schedule_time": whole, "next_run_at": tiny, "stamp": whole},
        "b utc micro": {
            "time_zone": "UTC",
            "schedule_time": micro,
            "next_run_at": whole,
            "last_run_at": micro,
            "end_at": whole + timedelta(days=9),
            "is_recurring": True,
            "repeat_interval": 1,
            "repeat_unit": "days",
            "stamp": micro,
        },
        "c berlin": {
            "time_zone": "Europe/Berlin",
            "schedule_time": before,
            "next_run_at": after,
            "last_run_at": before - timedelta(days=1),
            "end_at": after + timedelta(days=9),
            "is_recurring": True,
            "repeat_interval": 1,
            "repeat_unit": "hours",
            "stamp": after,
        },
    }
    for name, fields in definitions.items():
        stamp = fields.pop("stamp")
        order = Order.objects.create(user=alice, order_name=name, **fields)
        Order.objects.filter(pk=order.pk).update(created_at=stamp, updated_at=stamp)

    results = api_client_for(alice).get("/api/orders/?ordering=order_name").json()["results"]

    assert [{name: order[name] for name in TIME_COLUMNS} for order in results] == [
        {
            "schedule_time": "2031-03-30T00:30:00+00:00",
            "end_at": None,
            "next_run_at": "2031-03-30T00:30:00.000001+00:00",
            "last_run_at": None,
            "created_at": "2031-03-30T00:30:00+00:00",
            "updated_at": "2031-03-30T00:30:00+00:00",
        },
        {
            "schedule_time": "2031-03-30T00:30:00.123456+00:00",
            "end_at": "2031-04-08T00:30:00+00:00",
            "next_run_at": "2031-03-30T00:30:00+00:00",
            "last_run_at": "2031-03-30T00:30:00.123456+00:00",
            "created_at": "2031-03-30T00:30:00.123456+00:00",
            "updated_at": "2031-03-30T00:30:00.123456+00:00",
        },
        {
            "schedule_time": "2031-03-30T01:59:59+01:00",
            "end_at": "2031-04-08T03:00:00.500000+02:00",
            "next_run_at": "2031-03-30T03:00:00.500000+02:00",
            "last_run_at": "2031-03-29T01:59:59+01:00",
            "created_at": "2031-03-30T03:00:00.500000+02:00",
            "updated_at": "2031-03-30T03:00:00.500000+02:00",
        },
    ]
    assert [order["schedule_description"] for order in results] == [
        "Once, on 2031-03-30 at 00:30 (UTC)",
        "Every day at 00:30 (UTC)",
        "Every hour",
    ]
    expected = OrderSerializer(Order.objects.filter(user=alice).order_by("order_name"), many=True).data
    assert json.dumps(results) == json.dumps(expected)


def test_page_time_text_reads_as_the_models_times(owner: Any) -> None:
    """The database's text of each time is in a shape the UTC fast path formats (so the list does
    not fall back to parsing), reads as the model's datetime, and formats as its isoformat."""
    rows, _ = selectors.order_page_for_user(user=owner, offset=0, limit=200, times_as_text=True)
    by_id = {order.pk: order for order in Order.objects.filter(user=owner)}
    seen = 0
    for row in rows:
        order = by_id[row[0]]
        for name, value in zip(selectors.ORDER_ROW_COLUMNS, row, strict=True):
            expected = getattr(order, name)
            if name not in TIME_COLUMNS or expected is None:
                assert value == expected and type(value) is type(expected), (name, value, expected)
                continue
            seen += 1
            assert isinstance(value, str) and len(value) in (19, 26) and value[10] == " ", (name, value)
            assert datetime_from_db_text(value, connection.timezone) == expected, (name, value)
            assert utc_isoformat_from_db_text(value) == expected.astimezone(UTC).isoformat(), (name, value)
    assert seen > 23 * 3


@pytest.mark.parametrize(
    "text",
    [
        "2031-03-30 00:30:00",
        "2031-03-30 00:30:00.000000",
        "2031-03-30 00:30:00.000001",
        "2031-03-30 00:30:00.123456",
        "2031-03-30 00:30:00.100000",
        "0001-01-01 00:00:00.000000",
        "9999-12-31 23:59:59.999999",
        # Shapes no backend writes here, parsed instead of formatted.
        "2031-03-30T00:30:00",
        "2031-03-30 00:30:00.123",
        "2031-03-30 00:30",
        "20310330 003000",
    ],
)
def test_utc_isoformat_of_db_text_is_the_datetimes_isoformat(text: str) -> None:
    assert utc_isoformat_from_db_text(text) == datetime.fromisoformat(text).replace(tzinfo=UTC).isoformat()


def test_text_rows_from_a_connection_in_another_zone_read_as_the_orm_would(owner: Any) -> None:
    """Times stored in a non-UTC connection zone (DATABASES TIME_ZONE) are read in that zone, UTC
    orders included: the string fast path is only for text that is UTC."""
    berlin = ZoneInfo("Europe/Berlin")
    orders = list(Order.objects.filter(user=owner))
    time_positions = [selectors.ORDER_ROW_COLUMNS.index(name) for name in TIME_COLUMNS]
    rows = []
    for order in orders:
        row = list(order_values(order))
        for i in time_positions:
            if row[i] is not None:
                row[i] = str(row[i].astimezone(berlin).replace(tzinfo=None))
        rows.append(tuple(row))
    assert {order.time_zone for order in orders} >= {"UTC", "Europe/Berlin"}
    assert orders_as_json(rows, db_text_zone=berlin) == [order_as_json(order) for order in orders]
