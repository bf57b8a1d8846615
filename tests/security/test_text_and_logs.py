"""Any text a user types is stored and returned as given, never interpreted, and never splits a log line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from orders.events import write_event
from orders.models import Execution, Order
from tests.conftest import api_client_for, make_user
from tests.engine_helpers import log_lines, run_until
from tests.security.conftest import future, valid_payload

NAMES = [
    "🦄🚀 launch",  # 4-byte emoji (outside the BMP): needs utf8mb4, not MySQL's 3-byte utf8
    "🧑🏽‍🚀 astronaut with skin tone and ZWJ",
    "注文する 注文 订单 주문",
    "заказ товара",
    "طلب شراء",  # right-to-left
    "הזמנה",
    "ऑर्डर दें",
    "Ünïcödé naïve café",
    "e\u0301 combining accent",
    "<script>alert('x')</script>",
    '"><img src=x onerror=alert(1)>',
    "'; DROP TABLE orders_order; --",
    "Robert'); DELETE FROM accounts_user WHERE ('1'='1",
    "{{ 7*7 }} {% debug %}",
    "${jndi:ldap://example.com/a}",
    "%s %d %(name)s",
    "back\\slash",
    "tab\there",
    "\u202eRTL override",
    "x" * 255,
    "🦄" * 255,  # 255 characters of 4 bytes each
]


@pytest.mark.django_db
@pytest.mark.parametrize("name", NAMES, ids=range(len(NAMES)))
def test_names_round_trip_unchanged(alice: Any, alice_api: APIClient, name: str) -> None:
    created = alice_api.post("/api/orders/", valid_payload(order_name=name), format="json")
    assert created.status_code == 201, created.content[:300]
    order_id = created.json()["order_id"]
    assert created.json()["order_name"] == name
    assert Order.objects.get(pk=order_id).order_name == name
    assert alice_api.get(f"/api/orders/{order_id}/").json()["order_name"] == name
    listed = alice_api.get("/api/orders/").json()["results"]
    assert [o["order_name"] for o in listed] == [name]
    renamed = alice_api.patch(f"/api/orders/{order_id}/", {"order_name": name[::-1]}, format="json")
    assert renamed.status_code == 200
    assert Order.objects.get(pk=order_id).order_name == name[::-1]


@pytest.mark.django_db
def test_the_database_stores_four_byte_characters() -> None:
    if connection.vendor == "mysql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT CHARACTER_SET_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'orders_order' AND COLUMN_NAME = 'order_name'"
            )
            assert cursor.fetchone()[0] == "utf8mb4"


@pytest.mark.django_db
@pytest.mark.parametrize("term", ["%", "_", "\\", "'", "'; DROP TABLE orders_order; --", "🦄", "注文"])
def test_search_treats_its_term_as_text(alice: Any, alice_api: APIClient, term: str) -> None:
    alice_api.post("/api/orders/", valid_payload(order_name="plain"), format="json")
    alice_api.post("/api/orders/", valid_payload(order_name=f"has {term} inside"), format="json")
    response = alice_api.get("/api/orders/", {"search": term})
    assert response.status_code == 200, response.content[:300]
    assert [o["order_name"] for o in response.json()["results"]] == [f"has {term} inside"]
    assert Order.objects.count() == 2


@pytest.mark.django_db
def test_a_search_with_nul_is_refused(alice_api: APIClient) -> None:
    # SQLite would end the LIKE pattern at the NUL and match everything.
    alice_api.post("/api/orders/", valid_payload(order_name="plain"), format="json")
    response = alice_api.get("/api/orders/", {"search": "a\x00"})
    assert response.status_code == 400
    assert "search" in response.json()


def test_a_record_with_newlines_stays_on_one_log_line(settings: Any) -> None:
    settings.ORDER_LOG_FILE.write_text("")
    hostile = 'a\nb\r\nc\u2028d\u2029e\x85f\n{"event": "deleted", "order_id": 1}'
    write_event("created", order_id=7, user_id=1, order_name=hostile, error=hostile)
    lines = settings.ORDER_LOG_FILE.read_bytes().split(b"\n")
    assert lines[-1] == b"" and len(lines) == 2
    record = json.loads(lines[0])
    assert record["order_name"] == hostile and record["error"] == hostile
    assert record["event"] == "created"
    # Every line break a reader might honour is escaped, not written raw.
    text = lines[0].decode()
    for ch in ("\r", "\u2028", "\u2029", "\x85"):
        assert ch not in text


@pytest.mark.django_db(transaction=True)
def test_an_order_named_with_newlines_logs_one_line_per_event(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.fail_when_named_poison"
    settings.ORDER_MAX_ATTEMPTS = 1
    user = make_user()
    client = api_client_for(user)
    name = 'poison\n{"event": "succeeded", "order_id": 1}\r\nend'
    response = client.post(
        "/api/orders/", {"order_name": name, "schedule_time": future(0.5).isoformat()}, format="json"
    )
    assert response.status_code == 201, response.content[:300]
    order_id = response.json()["order_id"]
    run_until(lambda: Execution.objects.filter(order_id=order_id, status="failed").exists())

    raw = settings.ORDER_LOG_FILE.read_text()
    records = log_lines()
    assert len(records) == raw.count("\n")
    assert all(r["order_id"] == order_id for r in records), records
    assert records[0]["event"] == "created"
    assert "failed" in [r["event"] for r in records]
    assert "succeeded" not in [r["event"] for r in records]
