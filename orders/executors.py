"""What executing an order does. ORDER_EXECUTOR names the executor; it receives an ExecutionContext.

An executor returns a placement reference (a string, an ExecutionResult, or None) and raises to signal
failure: any exception is a failed attempt that is retried; an ExecutionFailed says whether a retry
can help and when. Delivery is at-least-once: after a worker crash the same occurrence can be handed
to an executor again, so an executor with outside effects should use `idempotency_key` (stable per
order and occurrence) to make a repeated call harmless, as a payment or order API's idempotency header
does (the webhook's `webhook-id` is that key).

An executor object with a `run_many(contexts)` method runs a batch's executions at once (the engine's
execution batches hand it all of them); the default one does, sending a batch's webhooks concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from orders.webhooks import deliver_executions
from webhooks.delivery import DeliveryResult, Outcome


@dataclass(frozen=True)
class ExecutionContext:
    order_id: int
    user_id: int
    order_name: str
    occurrence: int
    attempt: int
    scheduled_for: datetime
    idempotency_key: str
    # The order's webhook target ("" = none) and payload (docs/WEBHOOKS.md).
    target_url: str = ""
    payload: dict[str, Any] | None = None


@dataclass(frozen=True)
class ExecutionResult:
    """A success with details for the attempt's history (a webhook's status, latency, response)."""

    ref: str
    details: dict[str, Any] | None = None


class ExecutionFailed(Exception):
    """A failure that says what it means: `retryable=False` ends the occurrence at once (the receiver
    refused it); `retry_after` (seconds) replaces the backoff delay; `details` go into the history."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = True,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.details = details


ExecutorValue = ExecutionResult | ExecutionFailed


def simulate_placement(context: ExecutionContext) -> str:
    """An order without a target: pretend to place it and return a reference derived from the
    idempotency key, so a repeated delivery yields the same reference."""
    return f"PL-{context.order_id}-{context.occurrence}"


def outcome_of_delivery(result: DeliveryResult) -> ExecutorValue:
    details = result.as_record()
    if result.outcome == Outcome.SUCCEEDED:
        return ExecutionResult(f"HTTP {result.status_code}", details)
    return ExecutionFailed(
        result.error,
        retryable=result.outcome == Outcome.RETRYABLE,
        retry_after=result.retry_after_seconds,
        details=details,
    )


class PlaceOrders:
    """The default executor: an order with a target_url POSTs its signed webhook there; one without
    is simulated as before (simulate_placement)."""

    def __call__(self, context: ExecutionContext) -> ExecutionResult:
        [value] = self.run_many([context])
        if isinstance(value, ExecutionFailed):
            raise value
        return value

    def run_many(self, contexts: Sequence[ExecutionContext]) -> list[ExecutorValue]:
        """One value per context, in order; the webhooks among them are sent concurrently, each
        within its own timeout (WEBHOOK_TIMEOUT_SECONDS)."""
        values: list[ExecutorValue | None] = [
            None if c.target_url else ExecutionResult(simulate_placement(c)) for c in contexts
        ]
        hooks = [i for i, c in enumerate(contexts) if c.target_url]
        if hooks:
            results = deliver_executions([contexts[i] for i in hooks])
            for i, result in zip(hooks, results, strict=True):
                values[i] = outcome_of_delivery(result)
        return [v for v in values if v is not None]


place_order = PlaceOrders()
