"""Due times to the microsecond: the schedule keeps the exact instant, the scheduler moves a job at
that instant (never before it), and a placement due sooner than the scheduler's next wake-up wakes it.

The end-to-end test starts the real rqscheduler and rqworker processes; the figures under load are
the benchmark's (`make bench`, scenario precision_load), not asserted here.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rq_scheduler import Scheduler

from orders import jobqueue, services
from orders.models import Execution, Order
from tests.conftest import make_user
from tests.processes import running_stack


def _job(due: datetime, order_id: int = 1) -> jobqueue.OccurrenceJob:
    return jobqueue.OccurrenceJob(jobqueue.new_job_id(order_id, "t"), order_id, 1, 1, due)


def test_a_fractional_due_time_is_scored_exactly_not_rounded() -> None:
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=30, microseconds=123456)
    job = _job(due)
    jobqueue.schedule_occurrence(job)
    score = jobqueue.connection().zscore(Scheduler.scheduled_jobs_key, job.job_id)
    assert score == pytest.approx(due.timestamp(), abs=1e-6)


def test_move_due_jobs_moves_a_job_at_its_instant_and_not_a_microsecond_before() -> None:
    due = datetime.now(UTC) + timedelta(seconds=30, microseconds=700000)
    job = _job(due)
    jobqueue.schedule_occurrence(job)
    # rq-scheduler's own pass compares whole seconds and would have moved this job 0.7 s early.
    assert jobqueue.move_due_jobs(now=due.timestamp() - 0.001) == 0
    assert jobqueue.queue().get_job_ids() == []
    assert jobqueue.move_due_jobs(now=due.timestamp()) == 1
    assert jobqueue.queue().get_job_ids() == [job.job_id]
    assert jobqueue.connection().zscore(Scheduler.scheduled_jobs_key, job.job_id) is None


def test_seconds_until_next_due_reports_the_earliest_job() -> None:
    assert jobqueue.seconds_until_next_due() is None
    now = datetime.now(UTC)
    jobqueue.schedule_occurrences([_job(now + timedelta(seconds=50), 1), _job(now + timedelta(seconds=20), 2)])
    left = jobqueue.seconds_until_next_due()
    assert left is not None
    assert 19 < left <= 20


def test_a_placement_due_soon_wakes_a_waiting_scheduler_early() -> None:
    def place_soon() -> None:
        time.sleep(0.3)
        jobqueue.schedule_occurrence(_job(datetime.now(UTC) + timedelta(seconds=0.5)))

    placer = threading.Thread(target=place_soon)
    began = time.monotonic()
    placer.start()
    jobqueue.wait_for_due_or_wake(5.0)
    waited = time.monotonic() - began
    placer.join()
    assert 0.25 < waited < 2.0


def test_a_placement_due_later_does_not_wake_the_scheduler() -> None:
    jobqueue.schedule_occurrence(_job(datetime.now(UTC) + timedelta(seconds=30)))
    began = time.monotonic()
    jobqueue.wait_for_due_or_wake(0.6)
    assert time.monotonic() - began >= 0.55


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_orders_due_at_fractional_instants_start_at_them_never_before(tmp_path: Path) -> None:
    """With whole-second storage rounded up, an order due at hh:mm:ss.1 started 0.9 s late; each of
    these is due 0.1 s after a whole second, so that old behaviour fails the bound below by far."""
    user = make_user()
    with running_stack(tmp_path, web=False, workers=1) as stack:
        # Judge the schedule, not process start-up: wait until the worker is registered and the
        # scheduler has made a pass.
        ready_by = time.monotonic() + 60
        while not (jobqueue.read_heartbeat() and jobqueue.live_worker_count() >= 1):
            assert time.monotonic() < ready_by, stack.read_log("scheduler") + stack.read_log("worker1")
            time.sleep(0.1)
        base = datetime.now(UTC).replace(microsecond=100000) + timedelta(seconds=3)
        dues = [base + timedelta(seconds=i * 0.7) for i in range(8)]
        orders = [
            services.order_create(
                user=user, definition=services.OrderDefinition(order_name=f"precise {i}", schedule_time=due)
            )
            for i, due in enumerate(dues)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Order.objects.filter(pk__in=[o.pk for o in orders], status="completed").count() == len(orders):
                break
            time.sleep(0.2)
        log = stack.read_log("scheduler") + stack.read_log("worker1")
    lateness = []
    for order, due in zip(orders, dues, strict=True):
        execution = Execution.objects.get(order=order)
        assert execution.status == "succeeded", log
        assert execution.started_at is not None
        late = (execution.started_at - due).total_seconds()
        assert late >= 0, f"order {order.pk} started {-late:.3f} s before its due time"
        lateness.append(late)
    # A generous bound for a loaded 2-core machine; the old rounding was 0.9 s late on every one.
    assert max(lateness) < 0.5, lateness
