"""What executing an order does. ORDER_EXECUTOR names the function; it receives an ExecutionContext.

An executor returns a placement reference (or None) and raises to signal failure. Delivery is
at-least-once: after a worker crash the same occurrence can be handed to an executor again, so an
executor with outside effects should use `idempotency_key` (stable per order and occurrence) to make a
repeated call harmless, as a payment or order API's idempotency header does.
"""

from __future__ import annotations

import os
import time
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


# --- executors for tests, benchmarks and fault drills -----------------------------------------------------


def always_fail(context: ExecutionContext) -> str:
    raise RuntimeError(f"simulated failure of order {context.order_id}")


def fail_first_attempt(context: ExecutionContext) -> str:
    if context.attempt == 1:
        raise RuntimeError("simulated transient failure")
    return simulate_placement(context)


def slow(context: ExecutionContext) -> str:
    """Sleeps ORDER_SLOW_EXECUTOR_SECONDS (default 3) so that faults can land mid-run."""
    time.sleep(float(os.environ.get("ORDER_SLOW_EXECUTOR_SECONDS", "3")))
    return simulate_placement(context)


def fail_when_named_poison(context: ExecutionContext) -> str:
    if "poison" in context.order_name.lower():
        raise RuntimeError("poison order")
    return simulate_placement(context)
