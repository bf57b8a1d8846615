"""Reads, always scoped to the user: another user's order is simply not found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.http import Http404

from orders import sql
from orders.models import ACTIVE_ORDER_STATUSES, Execution, Notification, Order, OrderStatus
from orders.recurrence import upcoming, zone
from orders.sql import ORDERINGS

# The columns of an order page row, in order: the one field list of the order's JSON shape
# (orders/api/representation.py names each column's key, OrderSerializer lists those keys).
ORDER_ROW_COLUMNS = (
    "id",
    "user_id",
    "order_name",
    "schedule_time",
    "status",
    "job_id",
    "is_recurring",
    "repeat_interval",
    "repeat_unit",
    "cron",
    "max_executions",
    "end_at",
    "executions_count",
    "execution_limit",
    "time_zone",
    "misfire_policy",
    "overlap_policy",
    "pause_after_failures",
    "consecutive_failures",
    "target_url",
    "payload",
    "next_run_at",
    "last_run_at",
    "last_result",
    "created_at",
    "updated_at",
)


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


# The dashboard's sortable columns (a page concern: the API's `ordering` keeps ORDERINGS).
PAGE_SORTS = {
    "name": "order_name",
    "status": "status",
    "type": "is_recurring",
    "next_run": "next_run_at",
    "executions": "executions_count",
    "last_result": "last_run_at",
}


def order_list_sorted_for_user(*, user: Any, sort: str | None, **filters: Any) -> QuerySet[Order]:
    """order_list_for_user sorted by a dashboard column (`name`, `-name`, ...; unknown keys keep the
    default order). Orders without the value (never run, nothing ahead) come last either way."""
    qs = order_list_for_user(user=user, **filters)
    field = PAGE_SORTS.get((sort or "").removeprefix("-"))
    if field is None:
        return qs
    expression = models.F(field)
    ordered = expression.desc(nulls_last=True) if sort and sort.startswith("-") else expression.asc(nulls_last=True)
    return qs.order_by(ordered, "-id")


def order_page_for_user(
    *,
    user: Any,
    offset: int,
    limit: int,
    status: str | None = None,
    is_recurring: bool | None = None,
    search: str | None = None,
    ordering: str | None = None,
    using: str = "default",
    times_as_text: bool = False,
) -> tuple[list[tuple[Any, ...]], int | None]:
    """One page of order_list_for_user(...) as ORDER_ROW_COLUMNS tuples, and the total number of
    matching orders (None when the page is empty: the total rides along with the rows).

    The same rows, order and total as the queryset (tests/test_order_page.py compares them for
    every filter and ordering), in one hand-written statement (orders/sql.py says why). With
    times_as_text the time columns are the database's text in connections[using].timezone (read
    by orders.sql.datetime_from_db_text), for a caller that formats them without a datetime."""
    return sql.order_page_rows(
        columns=ORDER_ROW_COLUMNS,
        user_id=user.pk,
        offset=offset,
        limit=limit,
        status=status,
        is_recurring=is_recurring,
        search=search,
        ordering=ordering,
        using=using,
        times_as_text=times_as_text,
    )


def order_get_for_user(*, user: Any, order_id: int) -> Order:
    order = Order.objects.filter(user=user, pk=order_id).first()
    if order is None:
        raise Http404("Not found.")
    return order


def upcoming_runs(*, order: Order, count: int) -> list[datetime]:
    """The next `count` due times of the order (aware, in the order's time zone); none once it has
    finished, and never more than the executions it has left."""
    if order.status not in (*ACTIVE_ORDER_STATUSES, OrderStatus.PAUSED):
        return []
    remaining = order.executions_remaining
    if remaining is not None:
        count = min(count, remaining)
    if order.next_run_at is None and order.status != OrderStatus.PAUSED:
        return []
    tz = zone(order.time_zone)
    return [t.astimezone(tz) for t in upcoming(order.grid, order.next_grid_index, count)]


def execution_list_for_order(*, order: Order) -> QuerySet[Execution]:
    return Execution.objects.filter(order=order).order_by("-occurrence")


def notification_list_for_user(*, user: Any, unread_only: bool = False) -> QuerySet[Notification]:
    qs = Notification.objects.filter(user=user)
    if unread_only:
        qs = qs.filter(read_at__isnull=True)
    return qs


def notification_get_for_user(*, user: Any, notification_id: int) -> Notification:
    notification = Notification.objects.filter(user=user, pk=notification_id).first()
    if notification is None:
        raise Http404("Not found.")
    return notification


def unread_notification_count(*, user: Any) -> int:
    return Notification.objects.filter(user=user, read_at__isnull=True).count()
