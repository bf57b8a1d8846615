"""In-app notifications and emails for the two moments an owner must hear about."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

from orders.models import Notification, Order, OrderStatus

logger = logging.getLogger(__name__)


def _notify(order: Order, kind: str, message: str) -> None:
    Notification.objects.create(user_id=order.user_id, order=order, kind=kind, message=message[:500])
    email = order.user.email
    subject = f"[Order Scheduler] {message}"[:200]

    def send() -> None:
        try:
            send_mail(subject, message, settings.DEFAULT_FROM_EMAIL, [email], fail_silently=False)
        except Exception:
            logger.warning("could not send notification email to user %s", order.user_id, exc_info=True)

    transaction.on_commit(send)


def notify_order_finished(order: Order) -> None:
    if order.status == OrderStatus.COMPLETED:
        _notify(
            order,
            Notification.Kind.COMPLETED,
            f"Order \u201c{order.order_name}\u201d completed after {order.executions_count} execution(s).",
        )
    elif order.status == OrderStatus.FAILED:
        _notify(order, Notification.Kind.FAILED, f"Order \u201c{order.order_name}\u201d failed.")


def notify_occurrence_failed(order: Order, occurrence: int, error: str) -> None:
    _notify(
        order,
        Notification.Kind.FAILED,
        f"Order \u201c{order.order_name}\u201d: run #{occurrence} failed for good: {error[:200]}",
    )
