"""Bad field values are a 400 that names the field, on create (POST) and on update (PUT/PATCH)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from orders.models import Order
from tests.security.conftest import assert_field_error, valid_payload

pytestmark = pytest.mark.django_db

BAD_VALUES: list[tuple[str, Any]] = [
    ("repeat_interval", 0),
    ("repeat_interval", -5),
    ("repeat_interval", 5.5),
    ("repeat_interval", "five"),
    ("repeat_interval", True),
    ("repeat_interval", None),
    ("repeat_interval", [1]),
    ("repeat_interval", {"n": 1}),
    # Fits the column but the second run would land past the year 9000.
    ("repeat_interval", 2_000_000_000),
    ("repeat_interval", 10**30),
    ("repeat_interval", 10**4000),
    ("max_executions", 0),
    ("max_executions", -1),
    ("max_executions", 10**12),
    ("max_executions", "many"),
    ("repeat_unit", "fortnights"),
    ("repeat_unit", ""),
    # Units are case-sensitive on purpose (docs/SECURITY.md): "MINUTES" is not folded to "minutes".
    ("repeat_unit", "MINUTES"),
    ("repeat_unit", "Minutes"),
    ("repeat_unit", None),
    ("repeat_unit", 5),
    ("schedule_time", "2024-13-45T25:61"),
    ("schedule_time", ""),
    ("schedule_time", 1767225600),
    ("schedule_time", "1767225600"),
    ("schedule_time", "2020-01-01T00:00:00Z"),
    ("schedule_time", "9999-12-31T23:59:59-12:00"),
    ("schedule_time", "9999-12-31T23:59:59+14:00"),
    ("schedule_time", "9999-12-31T23:59:59Z"),
    ("schedule_time", "0001-01-01T00:00:00+14:00"),
    ("schedule_time", "2030-01-01T00:00:00+99:00"),
    ("schedule_time", "tomorrow"),
    ("schedule_time", "2030-01-01T00:00:00\x00"),
    ("schedule_time", "2" * 10_000),
    ("schedule_time", ["2030-01-01T00:00:00Z"]),
    ("order_name", "x" * 10_000),
    ("order_name", "x" * 256),
    ("order_name", ""),
    ("order_name", "   "),
    ("order_name", "nul\x00inside"),
    ("order_name", None),
    ("order_name", 12),
    ("order_name", {"a": 1}),
    ("is_recurring", "perhaps"),
    # JSON booleans only: DRF alone would take 0, 1, "true", "yes" and "off".
    ("is_recurring", 0),
    ("is_recurring", "true"),
    ("is_recurring", "yes"),
    ("time_zone", "Mars/Olympus_Mons"),
    ("time_zone", ""),
    ("time_zone", "UTC\x00"),
    ("time_zone", "../../etc/passwd"),
    ("time_zone", "x" * 10_000),
    ("misfire_policy", "sometimes"),
    ("overlap_policy", "sometimes"),
    ("overlap_policy", None),
    ("pause_after_failures", 0),
    ("pause_after_failures", -1),
    ("pause_after_failures", "9" * 30),
    ("pause_after_failures", 1.5),
    ("pause_after_failures", True),
    ("pause_after_failures", {"a": 1}),
]


def _ids(case: tuple[str, Any]) -> str:
    field, value = case
    text = repr(value)
    return f"{field}={text[:40]}"


@pytest.mark.parametrize("case", BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
def test_create_rejects_bad_value_with_field_error(alice_api: APIClient, case: tuple[str, Any]) -> None:
    field, value = case
    response = alice_api.post("/api/orders/", valid_payload(**{field: value}), format="json")
    assert_field_error(response, field)
    assert not Order.objects.exists()


@pytest.mark.parametrize("case", BAD_VALUES, ids=[_ids(c) for c in BAD_VALUES])
@pytest.mark.parametrize("method", ["put", "patch"])
def test_update_rejects_bad_value_with_field_error(
    alice: Any, alice_api: APIClient, case: tuple[str, Any], method: str
) -> None:
    created = alice_api.post("/api/orders/", valid_payload(), format="json")
    assert created.status_code == 201, created.json()
    order = Order.objects.get()
    before = (order.order_name, order.schedule_time, order.repeat_interval, order.repeat_unit, order.schedule_version)
    field, value = case
    response = getattr(alice_api, method)(f"/api/orders/{order.pk}/", valid_payload(**{field: value}), format="json")
    assert_field_error(response, field)
    order.refresh_from_db()
    assert (
        order.order_name,
        order.schedule_time,
        order.repeat_interval,
        order.repeat_unit,
        order.schedule_version,
    ) == before


def test_schedule_time_beyond_the_horizon_is_rejected(alice_api: APIClient) -> None:
    beyond = datetime.now(UTC) + timedelta(days=settings.ORDER_SCHEDULE_HORIZON_DAYS + 2)
    response = alice_api.post("/api/orders/", valid_payload(schedule_time=beyond.isoformat()), format="json")
    assert_field_error(response, "schedule_time")
    assert "days" in response.json()["schedule_time"][0]


# The most negative and most positive offsets among the selectable zones (common/timezones.py).
@pytest.mark.parametrize("time_zone", ["Pacific/Pago_Pago", "Pacific/Kiritimati", "UTC"])
def test_year_9999_naive_time_in_any_zone_is_rejected(alice_api: APIClient, time_zone: str) -> None:
    # A naive time is read in the order's zone: the UTC conversion itself overflows at -11:00.
    body = valid_payload(schedule_time="9999-12-31T23:59:59", time_zone=time_zone)
    assert_field_error(alice_api.post("/api/orders/", body, format="json"), "schedule_time")


def test_a_one_time_order_in_the_past_is_rejected(alice_api: APIClient) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    body = {"order_name": "late", "schedule_time": past}
    response = alice_api.post("/api/orders/", body, format="json")
    assert_field_error(response, "schedule_time")
    assert response.json()["schedule_time"] == ["The time must be in the future."]


def test_a_one_time_order_needs_a_time(alice_api: APIClient) -> None:
    assert_field_error(alice_api.post("/api/orders/", {"order_name": "when?"}, format="json"), "schedule_time")


@pytest.mark.parametrize("field", ["repeat_interval", "repeat_unit"])
def test_a_recurring_order_needs_interval_and_unit(alice_api: APIClient, field: str) -> None:
    body = valid_payload()
    del body[field]
    assert_field_error(alice_api.post("/api/orders/", body, format="json"), field)


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("status", "deleted"),
        ("status", ""),
        ("is_recurring", ""),
        ("ordering", ""),
        ("is_recurring", "maybe"),
        ("ordering", "password"),
        ("ordering", "user__password"),
        ("search", "x" * 256),
        ("page", "abc"),
        ("page", "0"),
        ("page", "-1"),
        ("page", "1e3"),
        ("page", "9" * 30),
        ("page", "\u00b2"),
        ("page_size", "\u00b2"),
        ("page_size", "0"),
        ("page_size", "-3"),
        ("page_size", str(10**9)),
        ("page_size", "ten"),
    ],
)
def test_list_rejects_bad_query_parameters(alice_api: APIClient, param: str, value: str) -> None:
    assert_field_error(alice_api.get("/api/orders/", {param: value}), param)


@pytest.mark.parametrize("value", ["maybe", "", "null", "2"])
def test_notifications_reject_a_bad_unread_flag(alice_api: APIClient, value: str) -> None:
    assert_field_error(alice_api.get("/api/notifications/", {"unread": value}), "unread")


@pytest.mark.parametrize("value", ["abc", "0", "101", "-1", "1e100", "9" * 40, "", "\u00b2"])
def test_upcoming_rejects_bad_count(alice: Any, alice_api: APIClient, value: str) -> None:
    order_id = alice_api.post("/api/orders/", valid_payload(), format="json").json()["order_id"]
    assert_field_error(alice_api.get(f"/api/orders/{order_id}/upcoming/", {"count": value}), "count")


def test_a_page_past_the_end_is_not_found(alice_api: APIClient) -> None:
    response = alice_api.get("/api/orders/", {"page": "99"})
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize("path", ["/api/orders/{id}/executions/", "/api/notifications/"])
@pytest.mark.parametrize(("param", "value"), [("page", "abc"), ("page_size", "0"), ("page_size", str(10**9))])
def test_every_paginated_list_validates_paging(alice_api: APIClient, path: str, param: str, value: str) -> None:
    order_id = alice_api.post("/api/orders/", valid_payload(), format="json").json()["order_id"]
    assert_field_error(alice_api.get(path.format(id=order_id), {param: value}), param)
