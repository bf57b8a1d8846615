"""The orders side of webhooks (docs/WEBHOOKS.md): an order's target_url and payload, checked; the
signed delivery of executions and of test deliveries.

The webhooks app below knows URLs, secrets and HTTP and nothing of orders; this module turns orders
and execution contexts into its deliveries.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from django.utils import timezone

from webhooks.delivery import Delivery, DeliveryResult, Outcome, send_webhook, send_webhooks
from webhooks.messages import EXECUTION_EVENT, TEST_EVENT, execution_data
from webhooks.services import signing_secrets_for_users
from webhooks.targets import TargetRefused, check_target_url

PAYLOAD_MAX_BYTES = 16 * 1024
UNREADABLE_SECRET = (
    "the signing secret cannot be read (the server's WEBHOOK_SECRETS_KEYS changed); make a new one on the account page"
)
TARGET_URL_MAX_LENGTH = 2000


class WebhookContext(Protocol):
    """What a delivery needs of an execution (orders.executors.ExecutionContext has it)."""

    @property
    def order_id(self) -> int: ...
    @property
    def user_id(self) -> int: ...
    @property
    def order_name(self) -> str: ...
    @property
    def occurrence(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def scheduled_for(self) -> datetime: ...
    @property
    def idempotency_key(self) -> str: ...
    @property
    def target_url(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any] | None: ...


def payload_problem(payload: Any) -> str | None:
    """Why this cannot be an order's payload, or None: a JSON object of at most 16 kB (as compact
    UTF-8 JSON), with finite numbers only."""
    if payload is None:
        return None
    if not isinstance(payload, dict):
        return "The payload must be a JSON object."
    try:
        text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return "The payload must be JSON (finite numbers, not too deeply nested)."
    if len(text.encode()) > PAYLOAD_MAX_BYTES:
        return f"The payload is larger than {PAYLOAD_MAX_BYTES // 1024} kB."
    return None


def target_url_problem(target_url: str) -> str | None:
    """Why this cannot be an order's target URL now (the full policy, DNS included), or None."""
    if not target_url:
        return None
    try:
        check_target_url(target_url)
    except TargetRefused as exc:
        return str(exc)
    return None


def webhook_field_errors(fields: dict[str, Any]) -> dict[str, list[str]]:
    """Field errors for the target_url and payload among these values (absent ones are not checked).
    Resolves the target's host: call it before taking any lock."""
    errors: dict[str, list[str]] = {}
    if "target_url" in fields and (problem := target_url_problem(fields["target_url"] or "")) is not None:
        errors["target_url"] = [problem]
    if "payload" in fields and (problem := payload_problem(fields["payload"])) is not None:
        errors["payload"] = [problem]
    return errors


def deliver_executions(contexts: Sequence[WebhookContext]) -> list[DeliveryResult]:
    """POST one signed message per execution context, all concurrently (each with its own timeout);
    one result per context, in order. The URL policy runs again inside (DNS may have changed), and
    so does the payload check (a row changed behind the services' back is refused, not sent)."""
    keys = signing_secrets_for_users({c.user_id for c in contexts})
    results: list[DeliveryResult | None] = [None] * len(contexts)
    deliveries: list[Delivery] = []
    positions: list[int] = []
    for i, context in enumerate(contexts):
        problem = payload_problem(context.payload) or (None if keys.get(context.user_id) else UNREADABLE_SECRET)
        if problem is not None:
            results[i] = DeliveryResult(Outcome.FAILED, error=f"Refused: {problem}")
            continue
        data = execution_data(
            order_id=context.order_id,
            order_name=context.order_name,
            occurrence=context.occurrence,
            attempt=context.attempt,
            scheduled_for=context.scheduled_for,
            idempotency_key=context.idempotency_key,
            payload=context.payload,
        )
        deliveries.append(
            Delivery(
                url=context.target_url,
                msg_id=context.idempotency_key,
                event_type=EXECUTION_EVENT,
                data=data,
                secrets=keys[context.user_id],
            )
        )
        positions.append(i)
    for i, result in zip(positions, send_webhooks(deliveries), strict=True):
        results[i] = result
    return [r for r in results if r is not None]


def send_test_delivery(
    *, order_id: int, user_id: int, order_name: str, target_url: str, payload: dict[str, Any] | None
) -> tuple[str, DeliveryResult]:
    """One signed `order.test` request to the order's target, now; returns (webhook-id, result). Not an
    execution: nothing about the order changes."""
    msg_id = f"test-{order_id}-{secrets.token_hex(8)}"
    problem = payload_problem(payload)
    if problem is not None:
        return msg_id, DeliveryResult(Outcome.FAILED, error=f"Refused: {problem}")
    data = execution_data(
        order_id=order_id,
        order_name=order_name,
        occurrence=0,
        attempt=1,
        scheduled_for=timezone.now(),
        idempotency_key=msg_id,
        payload=payload,
    )
    keys = signing_secrets_for_users([user_id])[user_id]
    if not keys:
        return msg_id, DeliveryResult(Outcome.FAILED, error=f"Refused: {UNREADABLE_SECRET}")
    delivery = Delivery(url=target_url, msg_id=msg_id, event_type=TEST_EVENT, data=data, secrets=keys)
    return msg_id, send_webhook(delivery)
