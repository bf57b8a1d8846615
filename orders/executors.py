"""What executing an order does. ORDER_EXECUTOR names the function; it receives an ExecutionContext.

An executor returns a placement reference (or None) and raises to signal failure. Delivery is
at-least-once: after a worker crash the same occurrence can be handed to an executor again, so an
executor with outside effects should use `idempotency_key` (stable per order and occurrence) to make a
repeated call harmless, as a payment or order API's idempotency header does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class ExecutionContext:
    order_id: int
    user_id: int
    order_name: str
    occurrence: int
    attempt: int
    scheduled_for: datetime
    idempotency_key: str


def simulate_placement(context: ExecutionContext) -> str:
    """The default: pretend to place the order and return a reference derived from the idempotency
    key, so a repeated delivery yields the same reference."""
    return f"PL-{context.order_id}-{context.occurrence}"
