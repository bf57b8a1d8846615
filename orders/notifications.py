"""In-app notifications and emails for the moments an owner must hear about: an order finished, a run
failed for good, an order paused itself after failures, and an order that was failing succeeded again."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import get_connection
from django.core.mail.message import EmailMessage
from django.db import transaction

from accounts.models import User
from orders.models import Notification, Order, OrderStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    order: Order
    kind: str
    message: str


def deliver(notices: list[Notice]) -> None:
    """Write the notifications in one statement and, after commit, send each owner one email over
    one connection (an execution batch can finish many orders at once)."""
    if not notices:
        return
    Notification.objects.bulk_create(
        [Notification(user_id=n.order.user_id, order=n.order, kind=n.kind, message=n.message[:500]) for n in notices]
    )
    emails = dict(User.objects.filter(pk__in={n.order.user_id for n in notices}).values_list("pk", "email"))
    by_user: dict[int, list[str]] = {}
    for notice in notices:
        by_user.setdefault(notice.order.user_id, []).append(notice.message)
    messages = []
    for user_id, texts in by_user.items():
        if len(texts) == 1:
            subject, body = f"[Order Scheduler] {texts[0]}"[:200], texts[0]
        else:
            # A batch can finish hundreds of one owner's orders in the same second: one email says it
            # all, rather than a flood (each message is also in the in-app notifications).
            subject = f"[Order Scheduler] {len(texts)} of your orders finished"
            body = "\n".join(texts)
        messages.append((user_id, subject, body, emails.get(user_id, "")))

    def send() -> None:
        try:
            connection = get_connection(fail_silently=False)
            connection.open()
        except Exception:
            logger.warning("could not open the mail connection for %s notification(s)", len(messages), exc_info=True)
            return
        try:
            for user_id, subject, body, address in messages:
                if not address:
                    continue
                try:
                    EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [address], connection=connection).send()
                except Exception:
                    # One bad address or a refused message must not cost the others their email.
                    logger.warning("could not send notification email to user %s", user_id, exc_info=True)
        finally:
            connection.close()

    transaction.on_commit(send)


def _notify(order: Order, kind: str, message: str, notices: list[Notice] | None) -> None:
    notice = Notice(order, kind, message)
    if notices is None:
        deliver([notice])
    else:
        notices.append(notice)


def notify_order_finished(order: Order, *, notices: list[Notice] | None = None) -> None:
    if order.status == OrderStatus.COMPLETED:
        _notify(
            order,
            Notification.Kind.COMPLETED,
            f"Order \u201c{order.order_name}\u201d completed after {order.executions_count} execution(s).",
            notices,
        )
    elif order.status == OrderStatus.FAILED:
        _notify(order, Notification.Kind.FAILED, f"Order \u201c{order.order_name}\u201d failed.", notices)


def notify_occurrence_failed(order: Order, occurrence: int, error: str) -> None:
    _notify(
        order,
        Notification.Kind.FAILED,
        f"Order \u201c{order.order_name}\u201d: run #{occurrence} failed for good: {error[:200]}",
        None,
    )


def notify_order_auto_paused(order: Order, *, failures: int, error: str, notices: list[Notice] | None = None) -> None:
    _notify(
        order,
        Notification.Kind.PAUSED,
        f"Order \u201c{order.order_name}\u201d paused after {failures} failed run(s) in a row; "
        f"resume it when fixed. Last error: {error[:200]}",
        notices,
    )


def notify_order_recovered(order: Order, *, failures: int, notices: list[Notice] | None = None) -> None:
    _notify(
        order,
        Notification.Kind.RECOVERED,
        f"Order \u201c{order.order_name}\u201d recovered: succeeded again after {failures} failed occurrence(s).",
        notices,
    )
