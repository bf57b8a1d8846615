"""Reads, always scoped to the user: another user's order is simply not found."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connections, models
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


# The columns of an order page row, in order (see order_page_for_user).
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
    "max_executions",
    "executions_count",
    "execution_limit",
    "time_zone",
    "misfire_policy",
    "next_run_at",
    "last_run_at",
    "last_result",
    "created_at",
    "updated_at",
)
# Which columns need converting, read off the model rather than listed again.
_FIELD_TYPES = [type(Order._meta.get_field(name)) for name in ORDER_ROW_COLUMNS]
_DATETIME_POSITIONS = tuple(i for i, kind in enumerate(_FIELD_TYPES) if issubclass(kind, models.DateTimeField))
_BOOLEAN_POSITIONS = tuple(i for i, kind in enumerate(_FIELD_TYPES) if issubclass(kind, models.BooleanField))


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
) -> tuple[list[tuple[Any, ...]], int | None]:
    """One page of order_list_for_user(...) as ORDER_ROW_COLUMNS tuples, and the total number of
    matching orders (None when the page is empty: the total rides along with the rows).

    The same rows, order and total as the queryset (tests/test_order_page.py compares them for
    every filter and ordering), in one hand-written statement: compiling the ORM's version of it
    cost more CPU than MariaDB spends running it, and MySQLdb's Python conversion of DATETIME
    values cost as much again, so times are read as text and parsed by datetime.fromisoformat.
    """
    if search and "\x00" in search:
        return [], None
    connection = connections[using]
    ops = connection.ops
    meta = Order._meta

    columns = {key: str(field.column) for field in meta.concrete_fields for key in (field.name, field.attname)}

    def column(name: str) -> str:
        return ops.quote_name(columns[name])

    where, params = [f"{column('user')} = %s"], [user.pk]
    if status:
        where.append(f"{column('status')} = %s")
        params.append(status)
    if is_recurring is not None:
        where.append(f"{column('is_recurring')} = %s")
        params.append(is_recurring)
    if search:
        # The SQL and pattern of Django's icontains lookup on this backend.
        lhs = ops.lookup_cast("icontains", "CharField") % column("order_name")
        operators: dict[str, str] = connection.operators  # type: ignore[attr-defined]  # every backend has it
        where.append(f"{lhs} {operators['icontains']}")
        params.append(f"%{ops.prep_for_like_query(search)}%")
    order_by = [ordering, "-id"] if ordering in ORDERINGS else [str(name) for name in meta.ordering or ()]
    order_sql = ", ".join(f"{column(f.lstrip('-'))} {'DESC' if f.startswith('-') else 'ASC'}" for f in order_by)
    selected = ", ".join(
        f"CAST({column(name)} AS CHAR)" if i in _DATETIME_POSITIONS else column(name)
        for i, name in enumerate(ORDER_ROW_COLUMNS)
    )
    table = ops.quote_name(meta.db_table)
    condition = " AND ".join(where)
    # Identifiers are the model's, quoted by the backend; ordering is one of ORDERINGS; every value
    # is a query parameter.
    sql = (
        f"SELECT {selected}, (SELECT COUNT(*) FROM {table} WHERE {condition}) "  # noqa: S608
        f"FROM {table} WHERE {condition} ORDER BY {order_sql} LIMIT {int(limit)} OFFSET {int(offset)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params + params)
        raw_rows = cursor.fetchall()
    if not raw_rows:
        return [], None
    db_tz = connection.timezone
    rows = []
    for raw in raw_rows:
        row = list(raw[:-1])
        for i in _DATETIME_POSITIONS:
            if row[i] is not None:
                row[i] = datetime.fromisoformat(row[i]).replace(tzinfo=db_tz)
        for i in _BOOLEAN_POSITIONS:
            row[i] = bool(row[i])
        rows.append(tuple(row))
    return rows, int(raw_rows[0][-1])


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
