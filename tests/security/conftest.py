"""Fixtures for the hostile-input suite: an owner (alice), an outsider (bob) and their orders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orders import services
from orders.models import Order

# Every endpoint that acts on one order (the id is filled in by each test).
ORDER_ENDPOINTS: list[tuple[str, str]] = [
    ("get", "/api/orders/{id}/"),
    ("put", "/api/orders/{id}/"),
    ("patch", "/api/orders/{id}/"),
    ("delete", "/api/orders/{id}/"),
    ("get", "/api/orders/{id}/executions/"),
    ("get", "/api/orders/{id}/upcoming/"),
    ("post", "/api/orders/{id}/pause/"),
    ("post", "/api/orders/{id}/resume/"),
    ("post", "/api/orders/{id}/run-now/"),
    ("post", "/api/orders/{id}/retry/"),
]


def future(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def make_order(user: Any, **overrides: Any) -> Order:
    """An order created through the same service the API uses."""
    fields: dict[str, Any] = {"order_name": "restock", "schedule_time": future()}
    fields.update(overrides)
    return services.order_create(user=user, definition=services.OrderDefinition(**fields))


def valid_payload(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_name": "weekly restock",
        "schedule_time": future().isoformat(),
        "is_recurring": True,
        "repeat_interval": 1,
        "repeat_unit": "weeks",
        "max_executions": 3,
    }
    body.update(overrides)
    return body


def assert_field_error(response: Any, field: str) -> None:
    """A 400 whose JSON body names the offending field with at least one message."""
    assert response.status_code == 400, (response.status_code, getattr(response, "content", b"")[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert field in body, body
    messages = body[field] if isinstance(body[field], list) else [body[field]]
    assert messages and all(isinstance(m, str) and m for m in messages), body


def assert_json_404(response: Any) -> None:
    assert response.status_code == 404, (response.status_code, getattr(response, "content", b"")[:500])
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}


@pytest.fixture
def bob_order(bob: Any) -> Order:
    return make_order(bob, order_name="bob's secret order")


@pytest.fixture
def alice_order(alice: Any) -> Order:
    return make_order(alice, order_name="alice's order")
