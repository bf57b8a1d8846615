"""A test delivery: one signed request to an order's target, now, outside its executions."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from orders.events import log_event
from orders.models import Order
from orders.webhooks import send_test_delivery, target_url_problem
from webhooks.delivery import DeliveryResult


@dataclass(frozen=True)
class TestDelivery:
    webhook_id: str
    result: DeliveryResult


def order_send_test_delivery(*, order: Order) -> TestDelivery:
    """POST an `order.test` message to the order's target_url and return what happened. Not an
    execution: nothing is counted, retried or changed on the order; the order log records it."""
    if not order.target_url:
        raise ValidationError({"target_url": ["This order has no target URL to test."]})
    problem = target_url_problem(order.target_url)
    if problem is not None:
        raise ValidationError({"target_url": [problem]})
    webhook_id, result = send_test_delivery(
        order_id=order.pk,
        user_id=order.user_id,
        order_name=order.order_name,
        target_url=order.target_url,
        payload=order.payload,
    )
    log_event(
        "test_delivery",
        order_id=order.pk,
        user_id=order.user_id,
        status=str(result.outcome),
        webhook_id=webhook_id,
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        error=result.error[:500],
    )
    return TestDelivery(webhook_id=webhook_id, result=result)
