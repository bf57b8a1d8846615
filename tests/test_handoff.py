"""The early hand-off: the scheduler moves a job up to ORDER_HANDOFF_LEAD_SECONDS before its instant,
the worker that pops it waits in place and takes the run at the instant, never before it; it gives
the job back when a due job waits behind it, and a worker killed in its wait loses no run.

The lateness it buys under load is the benchmark's (`make bench`, scenarios precision and
precision_load); these tests assert what can be observed: where jobs go, and what runs when.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.utils import timezone
from rq_scheduler import Scheduler

from orders import jobqueue, repair, services
from orders.models import Execution, ExecutionStatus, Order
from tests.conftest import make_user
from tests.processes import Stack, running_stack

DEAD = "worker-host:4242:deadbeef0000"


def _job(due: datetime, order_id: int = 1, grid_index: int = 1) -> jobqueue.OccurrenceJob:
    return jobqueue.OccurrenceJob(jobqueue.new_job_id(order_id, "t"), order_id, 1, grid_index, due)


def _due_field(job_id: str) -> float | None:
    raw = jobqueue.connection().hget(f"rq:job:{job_id}", jobqueue.HANDOFF_DUE_FIELD)
    return float(raw) if raw is not None else None


def test_a_poll_with_a_lead_moves_the_jobs_due_within_it_each_marked_with_its_instant() -> None:
    now = time.time()
    soon = _job(datetime.fromtimestamp(now + 0.3, UTC), order_id=1)
    later = _job(datetime.fromtimestamp(now + 5, UTC), order_id=2)
    jobqueue.schedule_occurrences([soon, later])
    result = jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=0.5)
    assert result.moved == 1
    assert jobqueue.queue().get_job_ids() == [soon.job_id]
    assert _due_field(soon.job_id) == pytest.approx(now + 0.3, abs=1e-6)
    assert jobqueue.connection().zscore(Scheduler.scheduled_jobs_key, later.job_id) is not None
    # Moved at or after its instant, a job carries no due field: it is due work.
    jobqueue.poll_schedule(owner="", lease_ms=0, now=later.due.timestamp(), lead=0.5)
    assert jobqueue.queue().get_job_ids() == [soon.job_id, later.job_id]
    assert _due_field(later.job_id) is None


def test_a_retry_within_the_lead_is_moved_at_its_instant_not_before() -> None:
    """Only occurrence jobs are moved early (their worker waits for the instant); a retry or a
    postponed run has no such wait, and a receiver's Retry-After must be honoured to the instant."""
    now = time.time()
    retry_due = datetime.fromtimestamp(now + 0.2, UTC)
    jobqueue.schedule_execution(job_id="order-2-x1-a2", execution_id=99, attempt=2, due=retry_due)
    occurrence = _job(datetime.fromtimestamp(now + 3, UTC), order_id=1)
    jobqueue.schedule_occurrence(occurrence)
    result = jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=0.5)
    assert result.moved == 0
    assert jobqueue.queue().get_job_ids() == []
    # The scheduler is told to wake at the retry's instant, which comes before the occurrence's
    # instant less the lead.
    assert result.next_due_in is not None
    assert result.next_due_in == pytest.approx(retry_due.timestamp() - time.time(), abs=0.01)
    assert jobqueue.poll_schedule(owner="", lease_ms=0, now=retry_due.timestamp(), lead=0.5).moved == 1
    assert jobqueue.queue().get_job_ids() == ["order-2-x1-a2"]
    assert _due_field("order-2-x1-a2") is None
    # With the retry gone, the next wake-up is the occurrence's instant less the lead.
    result = jobqueue.poll_schedule(owner="", lease_ms=0, now=retry_due.timestamp(), lead=0.5)
    assert result.next_due_in == pytest.approx(occurrence.due.timestamp() - 0.5 - time.time(), abs=0.01)


def test_only_a_job_that_is_due_counts_as_due_work_waiting() -> None:
    now = time.time()
    early = _job(datetime.fromtimestamp(now + 1.5, UTC), order_id=1)
    jobqueue.schedule_occurrence(early)
    jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=2.0)
    assert jobqueue.due_work_waiting() is None  # moved early, not due yet
    jobqueue.connection().delete(jobqueue.queue().key)
    jobqueue.schedule_execution(job_id="order-2-x1-a1", execution_id=99, attempt=1, due=None)
    assert jobqueue.due_work_waiting() == "order-2-x1-a1"  # a run-now or a retry: due at once
    jobqueue.connection().delete(jobqueue.queue().key)
    assert jobqueue.due_work_waiting() is None


def test_a_job_handed_back_goes_right_behind_the_due_job_or_to_the_head() -> None:
    q = jobqueue.queue()
    jobqueue.schedule_execution(job_id="order-2-x1-a1", execution_id=99, attempt=1, due=None)
    jobqueue.schedule_execution(job_id="order-3-x1-a1", execution_id=98, attempt=1, due=None)
    due = datetime.now(UTC) + timedelta(seconds=0.4)
    back = _job(due, order_id=1)
    jobqueue.hand_back(back, behind="order-2-x1-a1")
    assert q.get_job_ids() == ["order-2-x1-a1", back.job_id, "order-3-x1-a1"]
    assert _due_field(back.job_id) == pytest.approx(due.timestamp(), abs=1e-6)
    handed = q.fetch_job(back.job_id)
    assert handed is not None and tuple(handed.args) == (1, 1, 1) and handed.get_status() == "queued"
    # The due job was taken meanwhile: the one handed back is next.
    again = _job(due, order_id=4)
    jobqueue.hand_back(again, behind="order-gone")
    assert q.get_job_ids()[0] == again.job_id


def test_a_due_job_behind_early_jobs_counts_as_due_work_waiting() -> None:
    """A run-now (or a retry, or a postponed run) enqueued while early jobs wait in the queue for
    their instants sits behind them: the check sees it there, not only at the head."""
    now = time.time()
    first = _job(datetime.fromtimestamp(now + 1.0, UTC), order_id=1)
    second = _job(datetime.fromtimestamp(now + 1.2, UTC), order_id=3)
    jobqueue.schedule_occurrences([first, second])
    jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=1.9)
    jobqueue.schedule_execution(job_id="order-2-x1-a1", execution_id=99, attempt=1, due=None)
    assert jobqueue.queue().get_job_ids() == [first.job_id, second.job_id, "order-2-x1-a1"]
    assert jobqueue.due_work_waiting() == "order-2-x1-a1"


def test_the_check_for_due_work_looks_no_deeper_than_its_depth(settings: Any) -> None:
    settings.ORDER_BATCH_SIZE = 2
    now = time.time()
    early = [_job(datetime.fromtimestamp(now + 1.0 + i / 10, UTC), order_id=10 + i) for i in range(4)]
    jobqueue.schedule_occurrences(early)
    jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=1.9)
    jobqueue.schedule_execution(job_id="order-2-x1-a1", execution_id=99, attempt=1, due=None)
    assert jobqueue.handoff_scan_depth() == 4
    assert jobqueue.due_work_waiting() is None  # fifth in the queue: beyond the depth
    jobqueue.connection().lrem(jobqueue.queue().key, 1, early[0].job_id)
    assert jobqueue.due_work_waiting() == "order-2-x1-a1"  # fourth: within it


def test_a_job_handed_back_behind_a_due_job_further_back_lets_the_due_job_be_popped_next() -> None:
    """The due job is brought to the head and the job given back goes right behind it, ahead of the
    early jobs due after it: the freed worker pops the due job, the next pop is the job given back."""
    q = jobqueue.queue()
    now = time.time()
    later = _job(datetime.fromtimestamp(now + 1.2, UTC), order_id=3)
    jobqueue.schedule_occurrence(later)
    jobqueue.poll_schedule(owner="", lease_ms=0, now=now, lead=1.9)
    jobqueue.schedule_execution(job_id="order-2-x1-a1", execution_id=99, attempt=1, due=None)
    back = _job(datetime.fromtimestamp(now + 1.0, UTC), order_id=1)
    jobqueue.hand_back(back, behind="order-2-x1-a1")
    assert q.get_job_ids() == ["order-2-x1-a1", back.job_id, later.job_id]
    assert q.pop_job_id() == "order-2-x1-a1"
    assert q.pop_job_id() == back.job_id


@pytest.mark.django_db(transaction=True)
def test_an_order_whose_job_a_dead_worker_waited_for_gets_a_new_job() -> None:
    user = make_user()
    due = timezone.now() + timedelta(seconds=30)
    waited = services.order_create(user=user, definition=services.OrderDefinition(order_name="w", schedule_time=due))
    moved_on = services.order_create(user=user, definition=services.OrderDefinition(order_name="m", schedule_time=due))
    jobqueue.note_waiting(waited.job_id, jobqueue.WaitNote(DEAD, waited.pk, waited.schedule_version, 1))
    # This one was redefined after the wait began: the slot waited for is not its pending one.
    jobqueue.note_waiting(moved_on.job_id, jobqueue.WaitNote(DEAD, moved_on.pk, moved_on.schedule_version + 1, 1))
    # Redis just came up in this test: a missing heartbeat means death only once live workers
    # had the time to beat (see jobqueue.LIVENESS_SINCE_KEY).
    assert repair.recover_abandoned() == 0
    with time_machine.travel(timezone.now() + timedelta(seconds=jobqueue.WORKER_ALIVE_SECONDS + 1), tick=True):
        assert repair.recover_abandoned() == 1
    renewed = Order.objects.get(pk=waited.pk)
    assert renewed.job_id != waited.job_id
    assert jobqueue.live_job_ids([renewed.job_id]) == {renewed.job_id}
    assert Order.objects.get(pk=moved_on.pk).job_id == moved_on.job_id
    assert jobqueue.waiting_jobs() == {}


@pytest.mark.django_db(transaction=True)
def test_a_malformed_wait_note_is_dropped_and_the_others_are_still_recovered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    user = make_user()
    due = timezone.now() + timedelta(seconds=30)
    waited = services.order_create(user=user, definition=services.OrderDefinition(order_name="w", schedule_time=due))
    jobqueue.note_waiting(waited.job_id, jobqueue.WaitNote(DEAD, waited.pk, waited.schedule_version, 1))
    conn = jobqueue.connection()
    malformed: dict[str, str | bytes] = {
        "order-9-bad-words": "not a wait note",
        "order-9-bad-number": f"{DEAD} 9 one 1",
        "order-9-bad-bytes": b"\xff\xfe 9 1 1",
        "order-9-no-holder": " 9 1 1",
    }
    for job_id, value in malformed.items():
        conn.hset(jobqueue.WAITING_KEY, job_id, value)
    assert repair.recover_abandoned() == 0  # Redis just came up: see the test above
    with time_machine.travel(timezone.now() + timedelta(seconds=jobqueue.WORKER_ALIVE_SECONDS + 1), tick=True):
        assert repair.recover_abandoned() == 1
    assert Order.objects.get(pk=waited.pk).job_id != waited.job_id
    assert conn.hgetall(jobqueue.WAITING_KEY) == {}
    for job_id in malformed:
        assert f"malformed wait note for job {job_id}" in caplog.text


def _ready(stack: Stack) -> None:
    """Judge the hand-off, not process start-up: the worker is registered, the scheduler has polled."""
    ready_by = time.monotonic() + 60
    while not (jobqueue.read_heartbeat() and jobqueue.live_worker_count() >= 1):
        assert time.monotonic() < ready_by, stack.read_log("scheduler") + stack.read_log("worker1")
        time.sleep(0.1)


def _until_succeeded(stack: Stack, count: int, timeout: float = 30) -> str:
    """Wait until `count` executions succeeded; the worker's log."""
    deadline = time.monotonic() + timeout
    while Execution.objects.filter(status=ExecutionStatus.SUCCEEDED).count() < count:
        assert time.monotonic() < deadline, stack.read_log("worker1") + stack.read_log("scheduler")
        time.sleep(0.1)
    return stack.read_log("worker1")


def _wait_noted(stack: Stack, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not jobqueue.waiting_jobs():
        assert time.monotonic() < deadline, "no worker began waiting for the early job"
        time.sleep(0.02)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_waiting_worker_gives_its_early_job_back_for_a_run_now_and_still_starts_it_on_time(
    tmp_path: Path,
) -> None:
    user = make_user()
    far = timezone.now() + timedelta(days=1)
    other = services.order_create(user=user, definition=services.OrderDefinition(order_name="o", schedule_time=far))
    with running_stack(tmp_path, web=False, workers=1, ORDER_HANDOFF_LEAD_SECONDS="1.8") as stack:
        _ready(stack)
        due = timezone.now() + timedelta(seconds=2.5)
        early = services.order_create(user=user, definition=services.OrderDefinition(order_name="e", schedule_time=due))
        _wait_noted(stack)  # the one worker now waits about 1.8 s for `early`
        services.order_run_now(order=other)
        log = _until_succeeded(stack, 2)
    manual = Execution.objects.get(order=other)
    scheduled = Execution.objects.get(order=early)
    # Without the hand-back, the run-now would have waited for the early job's instant.
    assert manual.started_at is not None and manual.started_at < due, log
    assert scheduled.started_at is not None and scheduled.started_at >= scheduled.scheduled_for == due
    assert "handed back" in log
    # The order named the job given back while it waited (reconcile's orphan sweep keeps a job a
    # row names), and the run was taken through that job.
    assert "-back-" in scheduled.job_id
    assert jobqueue.waiting_jobs() == {}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_run_now_behind_an_early_job_in_the_queue_does_not_wait_for_their_instants(tmp_path: Path) -> None:
    user = make_user()
    far = timezone.now() + timedelta(days=1)
    other = services.order_create(user=user, definition=services.OrderDefinition(order_name="o", schedule_time=far))
    with running_stack(tmp_path, web=False, workers=1, ORDER_HANDOFF_LEAD_SECONDS="1.8") as stack:
        _ready(stack)
        due = timezone.now() + timedelta(seconds=2.5)
        first = services.order_create(user=user, definition=services.OrderDefinition(order_name="1", schedule_time=due))
        then = due + timedelta(seconds=0.2)
        second = services.order_create(
            user=user, definition=services.OrderDefinition(order_name="2", schedule_time=then)
        )
        _wait_noted(stack)  # the one worker waits for `first`
        queued_by = time.monotonic() + 5
        while jobqueue.queue().get_job_ids() != [Order.objects.get(pk=second.pk).job_id]:
            assert time.monotonic() < queued_by, "the second early job did not reach the queue"
            time.sleep(0.01)
        services.order_run_now(order=other)  # enqueued behind `second`, which waits for its instant
        log = _until_succeeded(stack, 3)
    manual = Execution.objects.get(order=other)
    # Not seen behind `second`, the run-now would have waited for both early jobs' instants.
    assert manual.started_at is not None and manual.started_at < due, log
    for order, instant in ((first, due), (second, then)):
        run = Execution.objects.get(order=order)
        assert run.started_at is not None and run.started_at >= run.scheduled_for == instant, log
    assert "handed back" in log


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_waiting_for_an_early_job_loses_no_run(tmp_path: Path) -> None:
    user = make_user()
    with running_stack(tmp_path, web=False, workers=1, ORDER_HANDOFF_LEAD_SECONDS="1.8") as stack:
        _ready(stack)
        due = timezone.now() + timedelta(seconds=2.5)
        order = services.order_create(user=user, definition=services.OrderDefinition(order_name="k", schedule_time=due))
        _wait_noted(stack)
        stack.stop("worker1", sig=signal.SIGKILL)
        killed_at = timezone.now()
        stack.start_worker()
        deadline = time.monotonic() + 30
        while not Execution.objects.filter(order=order, status=ExecutionStatus.SUCCEEDED).exists():
            assert time.monotonic() < deadline, stack.read_log("scheduler") + stack.read_log("worker2")
            time.sleep(0.1)
    [run] = Execution.objects.filter(order=order)
    assert run.started_at is not None
    assert killed_at < due <= run.started_at
    # Noticed by the scheduler's abandoned-run check once the dead worker's heartbeat lapsed.
    assert (run.started_at - killed_at).total_seconds() < 15
