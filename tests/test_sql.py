"""Each hand-written statement of orders/sql.py gives the answer of the ORM spelling it replaces.

(order_page_rows is compared with the ORM for every filter, ordering and page window in
tests/test_order_page.py; accounts' user read in tests/accounts/test_user_loading.py.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.transaction import TransactionManagementError

from orders import sql
from orders.models import ACTIVE_ORDER_STATUSES, Execution, ExecutionStatus, Order, OrderStatus
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

BASE = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)


def _order(user: Any, i: int, status: str) -> Order:
    return Order.objects.create(user=user, order_name=f"o{i}", schedule_time=BASE + timedelta(hours=i), status=status)


def test_active_count_equals_the_orms_count_for_each_user_and_exclusion(alice: Any, bob: Any) -> None:
    statuses = list(OrderStatus.values)
    mine = [_order(alice, i, statuses[i % len(statuses)]) for i in range(11)]
    _order(bob, 99, OrderStatus.SCHEDULED)
    for user in (alice, bob):
        for exclude in (None, mine[0].pk, mine[1].pk, mine[2].pk):
            expected = Order.objects.filter(user=user, status__in=ACTIVE_ORDER_STATUSES)
            if exclude is not None:
                expected = expected.exclude(pk=exclude)
            with transaction.atomic():
                counted = sql.count_active_orders_locking_user(user, exclude_order_id=exclude)
            assert counted == expected.count(), (user, exclude)


@pytest.mark.django_db(transaction=True)
def test_active_count_refuses_to_run_outside_a_transaction() -> None:
    # Without a transaction the row lock would be released at once and guard nothing.
    with pytest.raises(TransactionManagementError):
        sql.count_active_orders_locking_user(make_user("lone@example.com"))


@pytest.mark.django_db(transaction=True)
def test_bulk_update_writes_what_djangos_bulk_update_writes() -> None:
    user = make_user("bulk@example.com")
    ours = [_order(user, i, OrderStatus.SCHEDULED) for i in range(7)]
    theirs = [_order(user, 100 + i, OrderStatus.SCHEDULED) for i in range(7)]
    fields = ["job_id", "next_run_at", "status", "executions_count", "is_recurring", "last_result"]
    for rows in (ours, theirs):
        for i, order in enumerate(rows):
            order.job_id = f"order-{i}-v1-k1"
            order.next_run_at = None if i % 3 == 0 else BASE + timedelta(minutes=i, microseconds=i * 11)
            order.status = OrderStatus.RUNNING  # the same in every row: set once
            order.executions_count = i * 2
            order.is_recurring = i % 2 == 0
            order.last_result = "" if i % 2 else "succeeded"
    # A chunk smaller than the rows, so that more than one statement runs.
    sql.bulk_update(ours, fields, chunk=3)
    Order.objects.bulk_update(theirs, fields)
    for mine, reference in zip(ours, theirs, strict=True):
        got = Order.objects.values(*fields).get(pk=mine.pk)
        wanted = Order.objects.values(*fields).get(pk=reference.pk)
        assert got == wanted


@pytest.mark.django_db(transaction=True)
def test_bulk_update_of_executions_matches_djangos(alice: Any) -> None:
    order = _order(alice, 1, OrderStatus.RUNNING)
    rows = [
        Execution.objects.create(order=order, occurrence=n, scheduled_for=BASE, status=ExecutionStatus.RUNNING)
        for n in range(1, 9)
    ]
    copies = [
        Execution.objects.create(order=order, occurrence=n, scheduled_for=BASE, status=ExecutionStatus.RUNNING)
        for n in range(11, 19)
    ]
    fields = ["status", "finished_at", "result_ref", "attempt_history", "lease_expires_at"]
    for group in (rows, copies):
        for i, execution in enumerate(group):
            execution.status = ExecutionStatus.SUCCEEDED if i % 2 else ExecutionStatus.FAILED
            execution.finished_at = BASE + timedelta(seconds=i)
            execution.result_ref = f"PL-{i}"
            execution.attempt_history = [{"attempt": 1, "status": "succeeded", "error": "\u00e9" * i}]
            execution.lease_expires_at = None
    sql.bulk_update(rows, fields)
    Execution.objects.bulk_update(copies, fields)
    for mine, reference in zip(rows, copies, strict=True):
        assert Execution.objects.values(*fields).get(pk=mine.pk) == Execution.objects.values(*fields).get(
            pk=reference.pk
        )


def test_insert_order_writes_what_the_orms_save_writes(alice: Any) -> None:
    from django.utils import timezone as tz

    from orders.models import Order as OrderModel

    when = tz.now()

    def new() -> Any:
        return OrderModel(
            user=alice,
            order_name="same",
            schedule_time=when,
            status="scheduled",
            job_id="order-new-v1-k1-abc",
            payload={"a": [1, 2]},
            is_recurring=True,
            repeat_interval=2,
            repeat_unit="days",
            execution_limit=3,
        )

    by_orm, by_sql = new(), new()
    by_orm.save(force_insert=True)
    sql.insert_order(by_sql)
    assert by_sql.pk is not None and not by_sql._state.adding
    a, b = OrderModel.objects.get(pk=by_orm.pk), OrderModel.objects.get(pk=by_sql.pk)
    for field in OrderModel._meta.concrete_fields:
        if field.name in ("id", "created_at", "updated_at"):
            continue
        assert getattr(a, field.attname) == getattr(b, field.attname), field.name
    assert b.created_at is not None and b.updated_at is not None
