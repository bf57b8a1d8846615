"""Worker liveness (orders/jobqueue.py, orders/repair.py recover_abandoned): a dead worker's runs are
taken back as soon as its heartbeat is gone, a companion it never began is not charged an attempt,
and a slow executor whose worker is alive keeps its run.

Real MariaDB/Redis, the real rq-scheduler enqueue step and a real SimpleWorker in burst mode; the
worker that "dies" is a holder id whose heartbeat key does not exist, as a SIGKILLed worker's is
3 s after the kill (tests/faults/test_workers.py kills real ones)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.utils import timezone

from orders import engine, jobqueue, repair, services
from orders.models import Execution, ExecutionStatus, Order, OrderStatus
from tests.conftest import make_user
from tests.engine_helpers import log_lines, run_until

pytestmark = pytest.mark.django_db(transaction=True)

DEAD = "worker-host:4242:deadbeef0000"


@pytest.fixture(autouse=True)
def _redis_kept_its_data() -> None:
    """Each test starts on a flushed Redis, which looks like one that just lost its data (and with it
    the keys of live workers): say it has kept its data long enough for a missing key to mean death."""
    jobqueue.connection().set(jobqueue.LIVENESS_SINCE_KEY, repr(time.time() - 60))


def due_in(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0) + timedelta(seconds=1)


def create_many(count: int, at: datetime) -> list[Order]:
    user = make_user()
    return [
        services.order_create(user=user, definition=services.OrderDefinition(order_name=f"o{i}", schedule_time=at))
        for i in range(count)
    ]


def take_batch(orders: list[Order]) -> tuple[engine.Taken, list[engine.Taken]]:
    """What a worker does at the start of a batch: take the first run, then its companions."""
    at = orders[0].schedule_time
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.05)
    first = engine.occurrence_take(order_id=orders[0].pk, version=orders[0].schedule_version, grid_index=1)
    assert first is not None
    companions = engine.companions_take(exclude_order_id=orders[0].pk, limit=49)
    assert len(companions) == len(orders) - 1
    return first, companions


def test_a_dead_workers_runs_are_taken_back_at_once_and_unbegun_companions_are_not_charged() -> None:
    orders = create_many(5, due_in(1))
    first, companions = take_batch(orders)
    began, unbegun = companions[:2], companions[2:]
    # A batch that begins together writes its rows; one run after another notes each in Redis.
    engine.mark_began(began[:1], began_at=timezone.now())
    noted_at = timezone.now()
    jobqueue.note_began(DEAD, began[1].execution_id, noted_at.timestamp())
    # The worker dies here: its heartbeat key is gone (the lease, 65 s away, has nothing to do with it).
    Execution.objects.update(holder=DEAD)
    lost_at = timezone.now()
    assert repair.recover_abandoned() == 5

    for taken in [first, *began]:
        run = Execution.objects.get(pk=taken.execution_id)
        assert (run.status, run.attempts) == (ExecutionStatus.RETRYING, 1)
        assert run.attempt_history[0]["status"] == "failed"
        assert run.attempt_history[0]["error"].startswith("WorkerLost")
        assert run.attempt_history[0]["began_at"] is not None
    noted_run = Execution.objects.get(pk=began[1].execution_id)
    assert noted_run.started_at is not None
    assert noted_run.attempt_history[0]["began_at"] == noted_run.started_at.isoformat()
    assert abs((noted_run.started_at - noted_at).total_seconds()) < 0.001
    assert jobqueue.began_noted([DEAD]) == {}  # dropped once recovered
    for taken in unbegun:
        run = Execution.objects.get(pk=taken.execution_id)
        assert (run.status, run.attempts, run.started_at) == (ExecutionStatus.PENDING, 0, None)
        assert run.attempt_history == [
            {**run.attempt_history[0], "attempt": 1, "status": "returned", "error": repair.LOST_BEFORE_BEGIN}
        ]
        assert jobqueue.live_job_ids([run.job_id]) == {run.job_id}
    returned = {line["order_id"] for line in log_lines() if line["event"] == "returned"}
    assert returned == {t.context.order_id for t in unbegun}

    run_until(lambda: Order.objects.filter(status=OrderStatus.COMPLETED).count() == 5, timeout=20)
    for taken in [first, *began]:
        run = Execution.objects.get(pk=taken.execution_id)
        assert (run.status, run.attempts) == (ExecutionStatus.SUCCEEDED, 2)
    for taken in unbegun:
        run = Execution.objects.get(pk=taken.execution_id)
        # Its only charged attempt is the one that ran, and its start (every lateness figure's) is that one's.
        assert (run.status, run.attempts) == (ExecutionStatus.SUCCEEDED, 1)
        assert [h["status"] for h in run.attempt_history] == ["returned", "succeeded"]
        assert run.started_at is not None and run.started_at >= lost_at
        assert run.started_at == run.began_at
        assert run.attempt_history[1]["began_at"] == run.began_at.isoformat()


def test_a_companion_lost_before_it_began_again_and_again_is_never_failed(settings: Any) -> None:
    settings.ORDER_MAX_ATTEMPTS = 1
    orders = create_many(2, due_in(1))
    _, (companion,) = take_batch(orders)
    Execution.objects.update(holder=DEAD)
    assert repair.recover_abandoned() == 2
    for _ in range(3):
        # Its pending run is taken by a worker that dies before the executor begins... which cannot
        # happen to an execution job's own run (it begins at the take); a batch is the only way, so
        # play it by putting the row back as a companion taken by a dead worker.
        Execution.objects.filter(pk=companion.execution_id).update(
            status=ExecutionStatus.RUNNING, attempts=1, holder=DEAD, began_at=None
        )
        assert repair.recover_abandoned() == 1
    run_until(lambda: Execution.objects.get(pk=companion.execution_id).status == ExecutionStatus.SUCCEEDED, timeout=20)
    run = Execution.objects.get(pk=companion.execution_id)
    assert run.attempts == 1
    assert [h["status"] for h in run.attempt_history] == ["returned"] * 4 + ["succeeded"]
    assert Order.objects.get(pk=companion.context.order_id).status == OrderStatus.COMPLETED


def test_a_slow_executor_whose_worker_is_alive_keeps_its_run_for_ten_minutes(settings: Any) -> None:
    settings.ORDER_JOB_TIMEOUT_SECONDS = 15 * 60  # an executor allowed 15 minutes
    orders = create_many(1, due_in(1))
    first, _ = take_batch(orders)
    run = Execution.objects.get(pk=first.execution_id)
    assert run.holder == jobqueue.worker_holder()  # this process, whose heartbeat goes on
    with time_machine.travel(timezone.now() + timedelta(minutes=10), tick=True):
        assert repair.recover_abandoned() == 0
    # A Redis that lost its data loses the key of a live worker too: it is back within a beat, so
    # the run is not taken from it.
    jobqueue.connection().delete(jobqueue.WORKER_ALIVE_PREFIX + run.holder)
    assert repair.recover_abandoned() == 0
    assert Execution.objects.get(pk=first.execution_id).status == ExecutionStatus.RUNNING
    # The lease stays as the last resort: a worker stuck past its job timeout loses the run.
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=True):
        assert repair.recover_abandoned() == 1
    assert Execution.objects.get(pk=first.execution_id).status == ExecutionStatus.RETRYING


def test_a_redis_that_just_lost_its_data_takes_no_run_back_until_live_workers_could_beat_again() -> None:
    orders = create_many(1, due_in(1))
    first, _ = take_batch(orders)
    Execution.objects.update(holder=DEAD)
    jobqueue.connection().flushdb()  # every key gone: the dead worker's and the live ones' alike
    assert repair.recover_abandoned() == 0
    assert Execution.objects.get(pk=first.execution_id).status == ExecutionStatus.RUNNING
    with time_machine.travel(timezone.now() + timedelta(seconds=jobqueue.WORKER_ALIVE_SECONDS + 1), tick=True):
        assert repair.recover_abandoned() == 1
    assert Execution.objects.get(pk=first.execution_id).status == ExecutionStatus.RETRYING


def test_a_batch_records_each_companions_start_and_leaves_no_note_behind() -> None:
    orders = create_many(3, due_in(1))
    time.sleep(max(0.0, (orders[0].schedule_time - datetime.now(UTC)).total_seconds()) + 0.05)
    first = engine.occurrence_take(order_id=orders[0].pk, version=orders[0].schedule_version, grid_index=1)
    assert first is not None
    assert engine.run_occurrence_batch(first) == 3
    runs = list(Execution.objects.order_by("pk"))
    assert [r.status for r in runs] == [ExecutionStatus.SUCCEEDED] * 3
    for run in runs:
        assert run.began_at is not None and run.started_at == run.began_at >= run.scheduled_for
        assert run.attempt_history[0]["began_at"] == run.began_at.isoformat()
        assert run.holder == jobqueue.worker_holder()
    assert jobqueue.began_noted([jobqueue.worker_holder()]) == {}
