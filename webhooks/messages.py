"""The JSON a webhook carries: one envelope per Standard Webhooks' recommendation
({"type", "timestamp", "data"}), built from plain values (this app does not know the orders)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

EXECUTION_EVENT = "order.execution"
TEST_EVENT = "order.test"


def execution_data(
    *,
    order_id: int,
    order_name: str,
    occurrence: int,
    attempt: int,
    scheduled_for: datetime,
    idempotency_key: str,
    payload: dict[str, Any] | None,
) -> dict[str, Any]:
    """The one field list of an execution's webhook data (docs/WEBHOOKS.md describes it)."""
    return {
        "order_id": order_id,
        "order_name": order_name,
        "occurrence": occurrence,
        "attempt": attempt,
        "scheduled_for": scheduled_for.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "idempotency_key": idempotency_key,
        "payload": payload if payload is not None else {},
    }


def render_body(*, event_type: str, data: dict[str, Any], timestamp: datetime) -> str:
    """The exact text that is signed and sent: compact, ASCII-only JSON (no encoding questions)."""
    envelope = {
        "type": event_type,
        "timestamp": timestamp.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=True, sort_keys=False)
