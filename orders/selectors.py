"""Reads, always scoped to the user: another user's order is simply not found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from orders.models import Execution, Notification, Order, OrderStatus
from orders.schedule import upcoming, zone
from orders.services import order_grid

MAX_ID = 2**63 - 1
ORDERINGS = {
    "schedule_time",
    "-schedule_time",
    "next_run_at",
    "-next_run_at",
    "created_at",
    "-created_at",
    "order_name",
    "-order_name",
}


def parse_id(raw: Any) -> int:
    """Turn a path segment into an id, or raise Http404 (never a 500 or a 400: an id that cannot
    exist is just an object that is not there)."""
    text = str(raw)
    # isascii(): "²".isdigit() is true but int("²") raises ValueError (a 500).
    if not (text.isascii() and text.isdigit()) or len(text) > 19:
        raise Http404("Not found.")
    value = int(text)
    if value < 1 or value > MAX_ID:
        raise Http404("Not found.")
    return value


def order_list_for_user(
    *,
    user: Any,
    status: str | None = None,
    is_recurring: bool | None = None,
    search: str | None = None,
    ordering: str | None = None,
) -> QuerySet[Order]:
    qs = Order.objects.filter(user=user)
    if status:
        qs = qs.filter(status=status)
    if is_recurring is not None:
        qs = qs.filter(is_recurring=is_recurring)
    if search:
        if "\x00" in search:
            # Names cannot contain NUL, so nothing matches; SQLite would read the NUL as the pattern's end.
            return qs.none()
        qs = qs.filter(order_name__icontains=search)
    if ordering in ORDERINGS:
        qs = qs.order_by(ordering, "-id")
    return qs


def order_get_for_user(*, user: Any, order_id: Any) -> Order:
    order = Order.objects.filter(user=user, pk=parse_id(order_id)).first()
    if order is None:
        raise Http404("Not found.")
    return order


def upcoming_runs(*, order: Order, count: int) -> list[datetime]:
    """The next `count` due times of the order (aware, in the order's time zone); none once it has
    finished, and never more than the executions it has left."""
    if order.status not in (OrderStatus.SCHEDULED, OrderStatus.RUNNING, OrderStatus.PAUSED):
        return []
    remaining = order.executions_remaining
    if remaining is not None:
        count = min(count, remaining)
    if order.next_run_at is None and order.status != OrderStatus.PAUSED:
        return []
    tz = zone(order.time_zone)
    return [t.astimezone(tz) for t in upcoming(order_grid(order), order.next_grid_index, count)]


def upcoming_for(order: Order, count: int) -> list[str]:
    return [t.isoformat() for t in upcoming_runs(order=order, count=count)]


def execution_list_for_order(*, order: Order) -> QuerySet[Execution]:
    return Execution.objects.filter(order=order).order_by("-occurrence")


def notification_list_for_user(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    qs = Notification.objects.filter(user=user)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    return qs


def notification_get_for_user(*, user: Any, notification_id: Any) -> Notification:
    notification = Notification.objects.filter(user=user, pk=parse_id(notification_id)).first()
    if notification is None:
        raise Http404("Not found.")
    return notification


def unread_notification_count(*, user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()


def active_order_count(*, user: Any) -> int:
    return Order.objects.filter(user=user, status__in=(OrderStatus.SCHEDULED, OrderStatus.RUNNING)).count()
