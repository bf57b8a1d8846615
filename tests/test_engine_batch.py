"""Execution batches (orders/engine.py): a worker that runs one due order also takes other due orders.

Real MariaDB/Redis, the real rq-scheduler enqueue step and a real SimpleWorker in burst mode."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orders import engine, jobqueue, services
from orders.executors import ExecutionContext
from orders.models import Execution, ExecutionStatus, Notification, Order, OrderStatus
from tests.conftest import make_user
from tests.engine_helpers import enqueue_due, log_lines, run_until, work

pytestmark = pytest.mark.django_db(transaction=True)


def due_in(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0) + timedelta(seconds=1)


def create_many(count: int, at: datetime, user: Any = None, **fields: Any) -> list[Order]:
    user = user or make_user()
    return [
        services.order_create(
            user=user, definition=services.OrderDefinition(order_name=f"batch {i}", schedule_time=at, **fields)
        )
        for i in range(count)
    ]


def take_first(order: Order) -> engine.Taken:
    """The take a job of the order's first occurrence makes: the batch's first run."""
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=1)
    assert taken is not None
    return taken


def wait_past(at: datetime) -> None:
    time.sleep(max(0.0, (at - datetime.now(UTC)).total_seconds()) + 0.05)


def queued_job_count() -> int:
    return len(jobqueue.queue().get_job_ids())


def test_one_job_runs_its_due_companions_and_their_jobs_leave_the_queue(settings: Any, mailoutbox: Any) -> None:
    settings.ORDER_BATCH_SIZE = 10
    at = due_in(1)
    orders = create_many(25, at)
    wait_past(at)
    enqueue_due()
    assert queued_job_count() == 25
    first = orders[0]
    taken = take_first(first)
    ran = engine.run_occurrence_batch(taken)
    assert ran == 10
    done = Order.objects.filter(status=OrderStatus.COMPLETED)
    assert done.count() == 10
    # The 9 companions' jobs were dropped from the queue; the first one's job is the one we "ran"
    # by hand here, so it is still queued (25 - 9) and must find its slot taken.
    assert queued_job_count() == 16
    work()
    assert Order.objects.filter(status=OrderStatus.COMPLETED).count() == 25
    executions = Execution.objects.all()
    assert executions.count() == 25
    assert {e.status for e in executions} == {ExecutionStatus.SUCCEEDED}
    for execution in executions:
        assert execution.started_at is not None and execution.started_at >= at
        assert execution.finished_at is not None and execution.finished_at >= execution.started_at
        assert execution.attempt_history[-1]["status"] == "succeeded"
        assert execution.result_ref == f"PL-{execution.order_id}-1"
    assert Notification.objects.filter(kind=Notification.Kind.COMPLETED).count() == 25
    # One owner, three batches (10, then the 15 left in one batch of 10 and one of 5): one email
    # per batch, each listing its orders.
    assert len(mailoutbox) == 3
    assert sorted(m.body.count("completed after 1 execution") for m in mailoutbox) == [5, 10, 10]
    assert all("of your orders finished" in m.subject for m in mailoutbox)
    events = [line for line in log_lines() if line.get("order_id") in {o.pk for o in orders}]
    for name in ("started", "succeeded", "completed"):
        assert sorted(line["order_id"] for line in events if line["event"] == name) == sorted(o.pk for o in orders)
    assert jobqueue.connection().zcard("rq:scheduler:scheduled_jobs") == 0


def test_a_batch_needs_far_fewer_statements_per_order(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    at = due_in(1)
    orders = create_many(50, at)
    wait_past(at)
    first = orders[0]
    taken = take_first(first)
    with CaptureQueriesContext(connection) as queries:
        assert engine.run_occurrence_batch(taken) == 50
    # One order alone costs about 15 statements; 49 companions in bulk must cost a small constant
    # (plus one read of their orders' versions every RECHECK_SECONDS while they run).
    assert len(queries) <= 25, [q["sql"][:80] for q in queries]
    assert Order.objects.filter(status=OrderStatus.COMPLETED).count() == 50


def test_companions_are_never_taken_before_their_due_time(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    now_due = due_in(1)
    later = now_due + timedelta(seconds=30)
    early = create_many(3, now_due)
    future = create_many(3, later)
    wait_past(now_due)
    taken = take_first(early[0])
    assert engine.run_occurrence_batch(taken) == 3
    for order in future:
        order.refresh_from_db()
        assert order.status == OrderStatus.SCHEDULED and order.executions_count == 0
    assert not Execution.objects.filter(order__in=future).exists()


def test_misfired_paused_and_locked_orders_are_not_companions(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_MISFIRE_GRACE_SECONDS = 1
    at = due_in(1)
    orders = create_many(4, at)
    services.order_pause(order=orders[1])
    wait_past(at)
    # orders[2] is misfired relative to a later "now": its own job applies the misfire policy.
    Order.objects.filter(pk=orders[2].pk).update(next_run_at=timezone.now() - timedelta(seconds=5))
    taken = take_first(orders[0])
    assert engine.run_occurrence_batch(taken) == 2  # itself and orders[3]
    statuses = {o.pk: o.status for o in Order.objects.all()}
    assert statuses[orders[1].pk] == OrderStatus.PAUSED
    assert statuses[orders[2].pk] == OrderStatus.SCHEDULED
    assert statuses[orders[3].pk] == OrderStatus.COMPLETED


def test_recurring_companions_keep_their_grid_and_exact_count(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    at = due_in(1)
    orders = create_many(20, at, is_recurring=True, repeat_interval=1, repeat_unit="seconds", max_executions=3)
    run_until(lambda: Order.objects.filter(status=OrderStatus.COMPLETED).count() == 20, timeout=30)
    for order in orders:
        runs = list(Execution.objects.filter(order=order).order_by("occurrence"))
        assert [e.grid_index for e in runs] == [1, 2, 3]
        assert [e.scheduled_for for e in runs] == [at + timedelta(seconds=k) for k in range(3)]
        assert all(e.started_at is not None and e.started_at >= e.scheduled_for for e in runs)
    assert Execution.objects.count() == 60


def test_a_failing_companion_is_retried_on_its_own(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_EXECUTOR = "tests.faults.executors.fail_when_named_poison"
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 0.5
    at = due_in(1)
    user = make_user()
    good = create_many(5, at, user=user)
    poison = services.order_create(
        user=user, definition=services.OrderDefinition(order_name="poison pill", schedule_time=at)
    )
    wait_past(at)
    taken = take_first(good[0])
    assert engine.run_occurrence_batch(taken) == 6
    execution = Execution.objects.get(order=poison)
    assert execution.status == ExecutionStatus.RETRYING and execution.attempts == 1
    run_until(lambda: Execution.objects.get(order=poison).status == ExecutionStatus.FAILED, timeout=30)
    execution = Execution.objects.get(order=poison)
    assert [a["status"] for a in execution.attempt_history] == ["failed"] * 3
    assert Order.objects.filter(pk__in=[o.pk for o in good], status=OrderStatus.COMPLETED).count() == 5


def fast_then_slow(context: ExecutionContext) -> str:
    """An executor that is quick for the order named "fast" and slow for the others."""
    if context.order_name != "fast":
        time.sleep(0.2)
    return f"PL-{context.order_id}-{context.occurrence}"


def test_companions_past_the_time_budget_are_handed_back_and_still_run_once(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_EXECUTOR = "tests.test_engine_batch.fast_then_slow"
    settings.ORDER_BATCH_SECONDS = 0.3
    at = due_in(1)
    user = make_user()
    first = create_many(1, at, user=user)[0]
    Order.objects.filter(pk=first.pk).update(order_name="fast")
    create_many(5, at, user=user)
    wait_past(at)
    taken = take_first(first)
    ran = engine.run_occurrence_batch(taken)
    assert ran == 3  # itself, then two slow companions; the budget is spent after the second
    handed_back = list(Execution.objects.filter(status=ExecutionStatus.PENDING))
    assert len(handed_back) == 3
    assert all(e.started_at is None and e.attempts == 0 and e.job_id for e in handed_back)
    assert Order.objects.filter(status=OrderStatus.RUNNING).count() == 0
    run_until(lambda: Order.objects.filter(status=OrderStatus.COMPLETED).count() == 6, timeout=30)
    assert Execution.objects.count() == 6
    for execution in Execution.objects.all():
        assert execution.attempts == 1 and execution.status == ExecutionStatus.SUCCEEDED
        assert execution.started_at is not None and execution.started_at >= at


def test_batching_off_runs_one_order_per_job(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 1
    at = due_in(1)
    orders = create_many(3, at)
    wait_past(at)
    taken = take_first(orders[0])
    assert engine.run_occurrence_batch(taken) == 1
    assert Order.objects.filter(status=OrderStatus.COMPLETED).count() == 1


def meddling_executor(context: ExecutionContext) -> str:
    """Changes the order named "victim" while a batch runs (as a user would, between the batch's take
    and the victim's turn): the action is named by the running order ("pause", "delete", "update")."""
    victim = Order.objects.filter(order_name="victim").first()
    if victim is not None and context.order_name == "pause":
        services.order_pause(order=victim)
    elif victim is not None and context.order_name == "delete":
        services.order_delete(order=victim)
    elif victim is not None and context.order_name == "update":
        services.order_update(order=victim, changes={"schedule_time": timezone.now() + timedelta(hours=1)})
    return f"PL-{context.order_id}-{context.occurrence}"


@pytest.mark.parametrize("action", ["pause", "delete", "update"])
def test_a_companion_changed_after_the_take_does_not_start(settings: Any, monkeypatch: Any, action: str) -> None:
    settings.ORDER_BATCH_SIZE = 50
    # Read the versions before every companion: the meddler's change may take less than the
    # production interval between reads (RECHECK_SECONDS).
    monkeypatch.setattr(engine, "RECHECK_SECONDS", 0.0)
    settings.ORDER_EXECUTOR = "tests.test_engine_batch.meddling_executor"
    at = due_in(1)
    user = make_user()
    first, meddler, victim = create_many(3, at, user=user)
    Order.objects.filter(pk=meddler.pk).update(order_name=action)
    Order.objects.filter(pk=victim.pk).update(order_name="victim")
    wait_past(at)
    taken = take_first(first)
    assert engine.run_occurrence_batch(taken) == 2  # the first and the meddler; not the victim
    started = {line["order_id"] for line in log_lines() if line["event"] == "started"}
    assert victim.pk not in started
    if action == "delete":
        assert not Order.objects.filter(pk=victim.pk).exists()
        assert not Execution.objects.filter(order_id=victim.pk).exists()
        return
    execution = Execution.objects.get(order_id=victim.pk)
    # Handed back: the occurrence it took waits as a pending run of its own job.
    assert execution.status == ExecutionStatus.PENDING and execution.attempts == 0 and execution.started_at is None
    if action == "pause":
        work()
        assert Execution.objects.get(order_id=victim.pk).status == ExecutionStatus.PENDING
        services.order_resume(order=Order.objects.get(pk=victim.pk))
    run_until(lambda: Execution.objects.get(order_id=victim.pk).status == ExecutionStatus.SUCCEEDED, timeout=20)
    assert Execution.objects.filter(order_id=victim.pk).count() == 1


def stop_at_boom(context: ExecutionContext) -> str:
    if context.order_name == "boom":
        raise SystemExit("cold shutdown in the middle of a batch")
    return f"PL-{context.order_id}-{context.occurrence}"


def test_companions_not_reached_when_the_batch_is_interrupted_are_handed_back(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_EXECUTOR = "tests.test_engine_batch.stop_at_boom"
    at = due_in(1)
    user = make_user()
    orders = create_many(6, at, user=user)
    boom = orders[2]
    Order.objects.filter(pk=boom.pk).update(order_name="boom")
    wait_past(at)
    taken = take_first(orders[0])
    with pytest.raises(SystemExit):
        engine.run_occurrence_batch(taken)
    status = {e.order_id: e.status for e in Execution.objects.all()}
    # Run before the interruption: recorded. The interrupted one: running, recovered by its lease
    # like any run whose worker died. Not reached: back to pending runs with their own jobs.
    assert [status[o.pk] for o in orders[:2]] == [ExecutionStatus.SUCCEEDED] * 2
    assert status[boom.pk] == ExecutionStatus.RUNNING
    assert [status[o.pk] for o in orders[3:]] == [ExecutionStatus.PENDING] * 3
    assert all(e.job_id for e in Execution.objects.filter(status=ExecutionStatus.PENDING))


def test_batches_work_where_a_bulk_insert_returns_no_ids(settings: Any, monkeypatch: Any) -> None:
    # MySQL (unlike MariaDB and SQLite) does not return the ids of a bulk insert.
    settings.ORDER_BATCH_SIZE = 50
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", False)
    at = due_in(1)
    orders = create_many(8, at)
    wait_past(at)
    taken = take_first(orders[0])
    assert engine.run_occurrence_batch(taken) == 8
    assert Execution.objects.filter(status=ExecutionStatus.SUCCEEDED).count() == 8


def test_a_backlog_of_one_time_orders_past_the_grace_still_batches(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_MISFIRE_GRACE_SECONDS = 1
    at = due_in(1)
    orders = create_many(5, at)
    past = timezone.now().replace(microsecond=0) - timedelta(seconds=30)
    Order.objects.filter(pk__in=[o.pk for o in orders]).update(schedule_time=past, next_run_at=past)
    taken = take_first(orders[0])
    assert engine.run_occurrence_batch(taken) == 5


class _MeddlingMany:
    """meddling_executor with run_many, so that its batches take the default executor's path."""

    def __call__(self, context: ExecutionContext) -> str:
        return meddling_executor(context)

    def run_many(self, contexts: list[ExecutionContext]) -> list[str]:
        return [meddling_executor(c) for c in contexts]


meddling_many = _MeddlingMany()
BOTH_PATHS = ["tests.test_engine_batch.meddling_many", "tests.test_engine_batch.meddling_executor"]


@pytest.mark.parametrize("executor", BOTH_PATHS)
def test_companions_due_within_the_horizon_join_the_batch_and_each_starts_at_its_instant(
    settings: Any, executor: str
) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_BATCH_AHEAD_SECONDS = 0.3
    settings.ORDER_EXECUTOR = executor
    at = due_in(1)
    offsets_ms = [0, 40, 90, 150]
    user = make_user()
    stream = [create_many(1, at + timedelta(milliseconds=ms), user=user)[0] for ms in offsets_ms]
    [beyond] = create_many(1, at + timedelta(seconds=2), user=user)
    wait_past(at)
    assert engine.run_occurrence_batch(take_first(stream[0])) == len(stream)
    rows = {e.order_id: e for e in Execution.objects.all()}
    assert set(rows) == {o.pk for o in stream}
    starts = []
    for order, ms in zip(stream, offsets_ms, strict=True):
        execution = rows[order.pk]
        assert execution.status == ExecutionStatus.SUCCEEDED
        assert execution.scheduled_for == at + timedelta(milliseconds=ms)
        assert execution.started_at is not None and execution.started_at >= execution.scheduled_for  # never early
        starts.append(execution.started_at)
        order.refresh_from_db()
        assert order.last_run_at is not None and order.last_run_at >= execution.scheduled_for
    # Each began at its own instant, not all at the first's: the batch waited for them.
    assert starts == sorted(starts) and starts[-1] >= at + timedelta(milliseconds=offsets_ms[-1])
    beyond.refresh_from_db()
    assert beyond.status == OrderStatus.SCHEDULED and not Execution.objects.filter(order=beyond).exists()
    # The companions' own jobs were dropped (the first's is the one "run" by hand here); the beyond
    # order keeps its own.
    companion_jobs = {o.job_id for o in stream[1:]}
    assert jobqueue.live_job_ids([*companion_jobs, beyond.job_id]) == {beyond.job_id}


@pytest.mark.parametrize("executor", BOTH_PATHS)
def test_a_companion_taken_ahead_and_paused_before_its_instant_does_not_start(settings: Any, executor: str) -> None:
    settings.ORDER_BATCH_SIZE = 50
    settings.ORDER_BATCH_AHEAD_SECONDS = 0.3
    settings.ORDER_EXECUTOR = executor
    at = due_in(1)
    user = make_user()
    [first] = create_many(1, at, user=user)
    [meddler] = create_many(1, at + timedelta(milliseconds=50), user=user)
    [victim] = create_many(1, at + timedelta(milliseconds=150), user=user)
    Order.objects.filter(pk=meddler.pk).update(order_name="pause")
    Order.objects.filter(pk=victim.pk).update(order_name="victim")
    wait_past(at)
    # The meddler, a companion taken ahead, pauses the victim after the batch took it too and
    # before the victim's instant.
    assert engine.run_occurrence_batch(take_first(first)) == 2
    assert victim.pk not in {line["order_id"] for line in log_lines() if line["event"] == "started"}
    execution = Execution.objects.get(order_id=victim.pk)
    assert execution.status == ExecutionStatus.PENDING and execution.attempts == 0 and execution.started_at is None
    assert Order.objects.get(pk=victim.pk).status == OrderStatus.PAUSED


@pytest.mark.parametrize("ahead", ["-0.1", "0.5", "1"])
def test_settings_refuse_a_batch_horizon_out_of_range(ahead: str, tmp_path: Any) -> None:
    from django.conf import settings as live

    from tests.test_foundation import clean_env, run_manage

    # The session's Redis URL: `check` does not connect to it, and without one the child would start
    # an embedded redis-server of its own and leave it running.
    env = clean_env(DEBUG="true", VAR_DIR=str(tmp_path), REDIS_URL=live.REDIS_URL, ORDER_BATCH_AHEAD_SECONDS=ahead)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    assert "ORDER_BATCH_AHEAD_SECONDS must be at least 0, under 1 s and under ORDER_BATCH_SECONDS" in result.stderr
    # In range it starts.
    assert run_manage("check", env={**env, "ORDER_BATCH_AHEAD_SECONDS": "0.05"}).returncode == 0
