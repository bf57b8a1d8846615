"""Recording outcomes and taking runs through a database outage (orders/engine.py,
retry_through_outage): a retry after a commit whose answer was lost does nothing twice.

The lost answer is injected around the real engine functions (the commit happens, then the
connection error a cut would raise); the database outage itself is fault scenario 14
(tests/faults/test_database.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import OperationalError

from orders import engine, services
from orders.models import Execution, ExecutionStatus, Order, OrderStatus
from tests.conftest import make_user

# Outside a test transaction: inside one, there is nothing to retry (it raises at once).
pytestmark = pytest.mark.django_db(transaction=True)

LOST = (2013, "Lost connection to server during query")


def due_order() -> Order:
    due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    order = services.order_create(
        user=make_user(), definition=services.OrderDefinition(order_name="outage", schedule_time=due)
    )
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.01)
    return order


def losing_the_first_answer(real: Any) -> tuple[Any, list[Any]]:
    """`real`, whose first call commits and then raises as a cut connection would."""
    answers: list[Any] = []

    def call(**kwargs: Any) -> Any:
        answer = real(**kwargs)
        if not answers:
            answers.append(answer)
            raise OperationalError(*LOST)
        return answer

    return call, answers


def test_a_take_committed_with_its_answer_lost_is_run_by_its_own_job(monkeypatch: pytest.MonkeyPatch) -> None:
    order = due_order()
    take, lost = losing_the_first_answer(engine.occurrence_take)
    monkeypatch.setattr(engine, "occurrence_take", take)

    taken = engine.occurrence_take_through_outage(
        order_id=order.pk, version=order.schedule_version, grid_index=order.next_grid_index
    )

    assert lost and lost[0] is not None, "the first take did not commit"
    assert taken is not None and (taken.execution_id, taken.attempt) == (lost[0].execution_id, 1)
    engine.execute(taken)
    run = Execution.objects.get(order_id=order.pk)
    assert (run.status, run.attempts, len(run.attempt_history)) == (ExecutionStatus.SUCCEEDED, 1, 1)
    assert Order.objects.get(pk=order.pk).status == OrderStatus.COMPLETED


def test_an_outcome_committed_with_its_answer_lost_is_recorded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    order = due_order()
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=order.next_grid_index)
    assert taken is not None
    finish, lost = losing_the_first_answer(engine.execution_finish)
    monkeypatch.setattr(engine, "execution_finish", finish)

    engine.execute(taken)

    assert lost, "the outcome was never recorded"
    run = Execution.objects.get(order_id=order.pk)
    assert (run.status, run.attempts, len(run.attempt_history)) == (ExecutionStatus.SUCCEEDED, 1, 1)
    reloaded = Order.objects.get(pk=order.pk)
    assert (reloaded.status, reloaded.executions_count) == (OrderStatus.COMPLETED, 1)


def test_recording_gives_up_after_the_bound_and_leaves_the_run_to_its_lease(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.ORDER_OUTCOME_RETRY_SECONDS = 0.6
    order = due_order()
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=order.next_grid_index)
    assert taken is not None
    tries: list[float] = []

    def database_away(**kwargs: Any) -> None:
        tries.append(time.monotonic())
        raise OperationalError(2002, "Can't connect to server")

    monkeypatch.setattr(engine, "execution_finish", database_away)

    with pytest.raises(OperationalError):
        engine.execute(taken)
    assert 3 <= len(tries) <= 5  # at 0, 0.25, 0.6 (0.75 capped at the bound) s
    assert tries[-1] - tries[0] == pytest.approx(0.6, abs=0.2)
    assert Execution.objects.get(order_id=order.pk).status == ExecutionStatus.RUNNING


def test_companions_taken_by_a_commit_whose_answer_was_lost_go_back_uncharged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, companion = due_order(), due_order()
    taken = engine.occurrence_take(order_id=first.pk, version=first.schedule_version, grid_index=first.next_grid_index)
    assert taken is not None
    take, lost = losing_the_first_answer(engine._companions_take)
    monkeypatch.setattr(engine, "_companions_take", take)

    assert engine.companions_take(exclude_order_id=first.pk, limit=10) == []

    assert lost and [t.context.order_id for t in lost[0]] == [companion.pk], "the companion was not taken"
    run = Execution.objects.get(order_id=companion.pk)
    assert (run.status, run.attempts) == (ExecutionStatus.PENDING, 0)
    assert [h["status"] for h in run.attempt_history] == ["returned"]
    assert Execution.objects.get(pk=taken.execution_id).status == ExecutionStatus.RUNNING  # the first is untouched
