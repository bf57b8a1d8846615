"""common/transactions.py: a transaction that the database rolled back to break a deadlock runs again."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import OperationalError, connection, transaction

from accounts.models import User
from common.transactions import ATTEMPTS, atomic_with_retry
from orders.models import Notification
from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.mysql(reason="a real InnoDB deadlock")
def test_the_victim_of_a_real_deadlock_runs_again_and_both_transactions_commit() -> None:
    """Two transactions lock two rows in opposite orders. The other one has written 300 rows first,
    so InnoDB rolls back the decorated one (the lighter), which then runs again and commits."""
    first, second = make_user(), make_user()
    other_has_second, decorated_has_first = threading.Event(), threading.Event()
    errors: list[BaseException] = []
    attempts: list[int] = []

    def other() -> None:
        try:
            with transaction.atomic():
                Notification.objects.bulk_create(
                    Notification(user=second, kind="failed", message=f"weight {i}") for i in range(300)
                )
                User.objects.select_for_update().get(pk=second.pk)
                other_has_second.set()
                decorated_has_first.wait(10)
                User.objects.select_for_update().get(pk=first.pk)  # waits for the decorated one: the circle
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    @atomic_with_retry
    def decorated() -> str:
        attempts.append(len(attempts) + 1)
        User.objects.select_for_update().get(pk=first.pk)
        if len(attempts) == 1:
            decorated_has_first.set()
            other_has_second.wait(10)
            # Let the other transaction start waiting for `first` before this one asks for `second`.
            threading.Event().wait(0.3)
        User.objects.select_for_update().get(pk=second.pk)
        return "committed"

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert decorated() == "committed"
    finally:
        thread.join(20)
    assert errors == []
    assert attempts == [1, 2]
    assert Notification.objects.filter(user=second, message__startswith="weight").count() == 300


def test_a_deadlock_error_is_retried_up_to_the_limit_and_other_errors_are_not() -> None:
    # The error as MySQLdb raises it (its code first); SQLite never deadlocks this way.
    calls: list[str] = []

    @atomic_with_retry
    def always_deadlocked() -> None:
        calls.append("deadlock")
        raise OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")

    with pytest.raises(OperationalError):
        always_deadlocked()
    assert calls == ["deadlock"] * ATTEMPTS

    calls.clear()

    @atomic_with_retry
    def gone() -> None:
        calls.append("gone")
        raise OperationalError(2006, "MySQL server has gone away")

    with pytest.raises(OperationalError):
        gone()
    assert calls == ["gone"]


def test_inside_a_callers_transaction_the_error_goes_to_the_caller() -> None:
    """InnoDB rolled back the whole transaction, the caller's part too: only the caller can redo it."""
    calls: list[Any] = []

    @atomic_with_retry
    def deadlocked() -> None:
        calls.append(1)
        raise OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")

    with pytest.raises(OperationalError), transaction.atomic():
        deadlocked()
    assert calls == [1]


def test_the_work_of_each_attempt_is_all_or_nothing() -> None:
    user = make_user()
    calls: list[int] = []

    @atomic_with_retry
    def write_then_deadlock_once() -> None:
        Notification.objects.create(user=user, kind="failed", message=f"attempt {len(calls) + 1}")
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError(1213, "Deadlock found when trying to get lock; try restarting transaction")

    write_then_deadlock_once()
    assert list(Notification.objects.filter(user=user).values_list("message", flat=True)) == ["attempt 2"]
