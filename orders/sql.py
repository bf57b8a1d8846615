"""Every hand-written SQL statement of orders, each where the ORM's spelling of it cost measurably more.

Each statement is built from the model's own metadata (table and column names quoted by the
backend) and takes every value as a parameter. tests/test_sql.py compares each one's answer with
the ORM's. The measurements (bench/ANALYSIS.md, docs/BENCHMARKS.md):
- count_active_orders_locking_user: a resume's active-order cap (a create's is its INSERT's trigger,
  orders/active_counts.py). Compiling the ORM's two queries cost more CPU than the database spends
  running them ("the active-order cap in two plain statements", part of create's web CPU going from
  12.4 to 5.8-7.5 ms).
- order_page_rows: the API's order list, page and total in one statement (an unfiltered list's
  total is the user's orders_total, not a COUNT), times read as text
  (MySQLdb's DATETIME conversion cost as much as the query); part of the list's web CPU going
  from 19.5 to 5.3-6.1 ms. The API's list keeps that text (times_as_text): a UTC order's ISO text
  is made from it without a datetime (orders/api/representation.py).
- bulk_update: Django's bulk_update builds a CASE expression through the ORM at about 3 ms of CPU
  per row (0.41 s for three updates of 50 rows, more than the rest of a batch); with this, 100,000
  orders are rescheduled in 27.3 s instead of 73.1 s.
(accounts/selectors.py keeps the user-by-id statement of accounts: accounts sits below orders.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from functools import cache
from typing import Any

from django.db import IntegrityError, OperationalError, connection, connections, models, transaction
from django.db.transaction import TransactionManagementError

from accounts.models import User
from orders.models import ACTIVE_ORDER_STATUSES, Order

# The orderings the order list accepts (besides the model's default).
ORDERINGS = frozenset(
    {
        "schedule_time",
        "-schedule_time",
        "next_run_at",
        "-next_run_at",
        "created_at",
        "-created_at",
        "order_name",
        "-order_name",
    }
)


def count_active_orders_locking_user(user: User, *, exclude_order_id: int | None = None) -> int:
    """Lock the user's row, then count their active orders (all but `exclude_order_id`).

    Called inside the caller's transaction. The lock makes one user's creates and resumes take turns,
    so parallel requests cannot each see room for one more and all add it. The two statements stay
    two: under READ COMMITTED the count must be a new statement that starts after the lock is
    granted, so that it sees what the previous holder committed.
    """
    db = transaction.get_connection()
    if not db.in_atomic_block:
        raise TransactionManagementError("count_active_orders_locking_user must run inside a transaction.")
    quote = db.ops.quote_name
    lock = " FOR UPDATE" if db.features.has_select_for_update else ""
    placeholders = ", ".join(["%s"] * len(ACTIVE_ORDER_STATUSES))
    count_sql = (
        f"SELECT COUNT(*) FROM {quote(Order._meta.db_table)} "  # noqa: S608 - identifiers only; values are parameters
        f"WHERE {quote('user_id')} = %s AND {quote('status')} IN ({placeholders})"
    )
    params: list[Any] = [user.pk, *(status.value for status in ACTIVE_ORDER_STATUSES)]
    if exclude_order_id is not None:
        count_sql += f" AND {quote('id')} <> %s"
        params.append(exclude_order_id)
    lock_sql = f"SELECT {quote('id')} FROM {quote(User._meta.db_table)} WHERE {quote('id')} = %s{lock}"  # noqa: S608
    with db.cursor() as cursor:
        cursor.execute(lock_sql, [user.pk])
        cursor.execute(count_sql, params)
        row = cursor.fetchone()
    return int(row[0])


def recount_active_orders_locked(user_id: int, *, using: str | None = None) -> tuple[int, bool]:
    """Count the user's active orders and store the count as their counter: (count, whether it changed).
    A create refused by the insert trigger's cap calls it before it refuses (the counter may be high).

    The caller holds the user's row lock (or takes it here, in its transaction): a concurrent change
    that makes an order active waits for it in its trigger, and adds its one after this count.
    """
    db = transaction.get_connection(using)
    if not db.in_atomic_block:
        raise TransactionManagementError("recount_active_orders_locked must run inside a transaction.")
    quote = db.ops.quote_name
    lock = " FOR UPDATE" if db.features.has_select_for_update else ""
    placeholders = ", ".join(["%s"] * len(ACTIVE_ORDER_STATUSES))
    user_table = quote(User._meta.db_table)
    with db.cursor() as cursor:
        cursor.execute(f"SELECT {quote('active_orders')} FROM {user_table} WHERE {quote('id')} = %s{lock}", [user_id])  # noqa: S608
        row = cursor.fetchone()
        if row is None:
            return 0, False
        cursor.execute(
            f"SELECT COUNT(*) FROM {quote(Order._meta.db_table)} "  # noqa: S608 - identifiers only
            f"WHERE {quote('user_id')} = %s AND {quote('status')} IN ({placeholders})",
            [user_id, *(status.value for status in ACTIVE_ORDER_STATUSES)],
        )
        count = int(cursor.fetchone()[0])
        if count == int(row[0]):
            return count, False
        cursor.execute(
            f"UPDATE {user_table} SET {quote('active_orders')} = %s WHERE {quote('id')} = %s",  # noqa: S608
            [count, user_id],
        )
    return count, True


@cache
def _insert_statement(vendor: str) -> tuple[str, tuple[models.Field[Any, Any], ...]]:
    """The INSERT of a new Order row (every concrete field but the id) and those fields, built once."""
    db = connections["default"] if connections["default"].vendor == vendor else connection
    quote = db.ops.quote_name
    fields = tuple(f for f in Order._meta.concrete_fields if not f.primary_key)
    columns = ", ".join(quote(str(f.column)) for f in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO {quote(Order._meta.db_table)} ({columns}) VALUES ({placeholders})", fields  # noqa: S608


# The message of the insert trigger's refusal (orders/active_counts.py writes the trigger).
CAP_REACHED = "orders: active-order cap reached"


class ActiveCapReached(Exception):
    """The insert trigger refused an order row that asked for a cap (Order.active_cap): its user's
    counter is at the cap. The counter can be above the true number: recount before refusing."""


def insert_order(order: Order) -> None:
    """order.save(force_insert=True) for a new order, in one precompiled statement: the values are
    prepared by each field exactly as save() prepares them (pre_save: auto_now times, then
    get_db_prep_save), but the INSERT is not compiled through the ORM on every create (about as
    much CPU as the rest of the service). No signals are sent: nothing listens to Order's.

    Raises ActiveCapReached when order.active_cap is set and the user's counter is at it (the
    trigger's refusal, orders/active_counts.py); the statement then changed nothing."""
    db = transaction.get_connection()
    sql, fields = _insert_statement(db.vendor)
    values = [f.get_db_prep_save(f.pre_save(order, True), db) for f in fields]
    with db.cursor() as cursor:
        try:
            cursor.execute(sql, values)
        except (OperationalError, IntegrityError) as exc:
            # MariaDB: SIGNAL (1644, text); SQLite: RAISE(ABORT, text), a constraint error.
            if CAP_REACHED in str(exc):
                raise ActiveCapReached from exc
            raise
        order.pk = db.ops.last_insert_id(cursor, Order._meta.db_table, Order._meta.pk.column)
    order._state.adding = False
    order._state.db = db.alias


@cache
def _positions(columns: tuple[str, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """Which of these Order columns are date-times, which booleans and which JSON, read off the model."""
    kinds = [type(Order._meta.get_field(name)) for name in columns]
    datetimes = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, models.DateTimeField))
    booleans = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, models.BooleanField))
    jsons = tuple(i for i, kind in enumerate(kinds) if issubclass(kind, models.JSONField))
    return datetimes, booleans, jsons


@cache
def _page_statement(
    columns: tuple[str, ...],
    using: str,
    *,
    by_status: bool,
    by_recurring: bool,
    by_search: bool,
    ordering: str | None,
) -> tuple[str, bool]:
    """order_page_rows' statement up to its LIMIT, for one shape of filters (built once per shape:
    the text depends only on which filters are present, never on their values), and whether its
    total is a COUNT over the same filters (True) or the user's orders_total (False)."""
    datetime_positions = _positions(columns)[0]
    db = connections[using]
    ops = db.ops
    meta = Order._meta

    names = {key: str(field.column) for field in meta.concrete_fields for key in (field.name, field.attname)}

    def column(name: str) -> str:
        return ops.quote_name(names[name])

    where: list[str] = [f"{column('user')} = %s"]
    if by_status:
        where.append(f"{column('status')} = %s")
    if by_recurring:
        where.append(f"{column('is_recurring')} = %s")
    if by_search:
        # The SQL and pattern of Django's icontains lookup on this backend.
        lhs = ops.lookup_cast("icontains", "CharField") % column("order_name")
        operators: dict[str, str] = db.operators  # type: ignore[attr-defined]  # every backend has it
        where.append(f"{lhs} {operators['icontains']}")
    order_by = [ordering, "-id"] if ordering is not None else [str(name) for name in meta.ordering or ()]
    order_sql = ", ".join(f"{column(f.lstrip('-'))} {'DESC' if f.startswith('-') else 'ASC'}" for f in order_by)
    selected = ", ".join(
        f"CAST({column(name)} AS CHAR)" if i in datetime_positions else column(name) for i, name in enumerate(columns)
    )
    table = ops.quote_name(meta.db_table)
    condition = " AND ".join(where)
    if len(where) == 1:
        # Unfiltered: the user's orders_total, kept exact by triggers (orders/active_counts.py), is
        # the total; a COUNT would walk every one of the user's orders on every page.
        total_sql = f"SELECT {ops.quote_name('orders_total')} FROM {ops.quote_name(User._meta.db_table)} WHERE {ops.quote_name('id')} = %s"  # noqa: S608, E501
    else:
        total_sql = f"SELECT COUNT(*) FROM {table} WHERE {condition}"  # noqa: S608
    statement = f"SELECT {selected}, ({total_sql}) FROM {table} WHERE {condition} ORDER BY {order_sql}"  # noqa: S608
    return statement, len(where) > 1


def order_page_rows(
    *,
    columns: Sequence[str],
    user_id: int,
    offset: int,
    limit: int,
    status: str | None = None,
    is_recurring: bool | None = None,
    search: str | None = None,
    ordering: str | None = None,
    using: str = "default",
    times_as_text: bool = False,
) -> tuple[list[tuple[Any, ...]], int | None]:
    """One page of the user's orders as tuples of `columns`, and the number of matching orders (None
    when the page is empty: the total rides along with the rows). The same rows, order and total as
    orders.selectors.order_list_for_user's queryset; times are read as text and parsed by
    datetime_from_db_text (with times_as_text, left as that text, in the zone
    connections[using].timezone), JSON by json.loads."""
    if search and "\x00" in search:
        return [], None
    columns = tuple(columns)
    datetime_positions, boolean_positions, json_positions = _positions(columns)
    db = connections[using]
    params: list[Any] = [user_id]
    if status:
        params.append(status)
    if is_recurring is not None:
        params.append(is_recurring)
    if search:
        params.append(f"%{db.ops.prep_for_like_query(search)}%")
    statement, filtered = _page_statement(
        columns,
        using,
        by_status=bool(status),
        by_recurring=is_recurring is not None,
        by_search=bool(search),
        ordering=ordering if ordering in ORDERINGS else None,
    )
    # Identifiers are the model's, quoted by the backend; ordering is one of ORDERINGS; limit and
    # offset are integers; every value is a query parameter.
    sql = f"{statement} LIMIT {int(limit)} OFFSET {int(offset)}"
    total_params = list(params) if filtered else [user_id]
    with db.cursor() as cursor:
        cursor.execute(sql, total_params + params)
        raw_rows = cursor.fetchall()
    if not raw_rows:
        return [], None
    db_tz = db.timezone
    if times_as_text:
        datetime_positions = ()
    rows = []
    for raw in raw_rows:
        row = list(raw[:-1])
        for i in datetime_positions:
            if row[i] is not None:
                row[i] = datetime_from_db_text(row[i], db_tz)
        for i in boolean_positions:
            row[i] = bool(row[i])
        for i in json_positions:
            # A JSON column comes back as its text (what JSONField.from_db_value would decode).
            if isinstance(row[i], str | bytes):
                row[i] = json.loads(row[i])
        rows.append(tuple(row))
    return rows, int(raw_rows[0][-1])


def datetime_from_db_text(text: str, tz: tzinfo | None) -> datetime:
    """A time column read as text (CAST AS CHAR) as the datetime the ORM reads: the database's
    naive time in the connection's zone `tz`."""
    return datetime.fromisoformat(text).replace(tzinfo=tz)


def utc_isoformat_from_db_text(text: str) -> str:
    """datetime_from_db_text(text, UTC).isoformat(), by string operations for the shapes the backends
    write: 'YYYY-MM-DD HH:MM:SS' and 6 fraction digits (MariaDB's DATETIME(6) always has them,
    zeros included) or none (SQLite keeps what Django wrote: none for a whole second). isoformat
    leaves a zero fraction out. Any other text is parsed."""
    if text[10:11] == " ":
        if len(text) == 26 and text[19] == ".":
            if text.endswith(".000000"):
                text = text[:19]
            return text.replace(" ", "T", 1) + "+00:00"
        if len(text) == 19:
            return text.replace(" ", "T", 1) + "+00:00"
    return datetime_from_db_text(text, UTC).isoformat()


def bulk_update(rows: Sequence[models.Model], fields: list[str], *, chunk: int = 500) -> None:
    """Model.objects.bulk_update(rows, fields): one UPDATE per `chunk` rows of one model, each row to
    its own values (the caller holds their locks). A field with the same value in every row is set
    once. Chunks keep each CASE short: the database evaluates it row by row."""
    for start in range(0, len(rows), chunk):
        _bulk_update_chunk(rows[start : start + chunk], fields)


def _bulk_update_chunk(rows: Sequence[models.Model], fields: list[str]) -> None:
    if not rows:
        return
    meta = type(rows[0])._meta
    pk_column = str(meta.pk.column) if meta.pk is not None else "id"
    quote = connection.ops.quote_name
    pks = [row.pk for row in rows]
    assignments: list[str] = []
    params: list[Any] = []
    for name in fields:
        field = meta.get_field(name)
        assert isinstance(field, models.Field)
        values = [field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows]
        column = quote(str(field.column))
        if all(value == values[0] for value in values):
            assignments.append(f"{column} = %s")
            params.append(values[0])
            continue
        assignments.append(f"{column} = CASE {quote(pk_column)} " + "WHEN %s THEN %s " * len(rows) + "END")
        for pk, value in zip(pks, values, strict=True):
            params += [pk, value]
    placeholders = ", ".join(["%s"] * len(pks))
    # Only quoted model metadata and placeholders go into the text; every value is a parameter.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {quote(pk_column)} IN ({placeholders})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *pks])
