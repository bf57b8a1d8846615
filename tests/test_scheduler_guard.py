"""The scheduler's poll (orders/scheduler_guard.py, jobqueue.poll_schedule): one scheduler moves due
jobs under an owner-checked lease, a standby takes over when it expires or is handed over, a
restarted scheduler takes its own stale lease at once, and a Redis that lost its data is rebuilt
from the database at the next poll. The fault suite (tests/faults/) measures the same with real
processes."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from rq.job import Job
from rq_scheduler import Scheduler

from orders import jobqueue, services
from orders.models import Order
from orders.scheduler_guard import SchedulerGuard
from tests.conftest import make_user
from tests.engine_helpers import work


def _due_job(order_id: int = 1, *, seconds: float = -1.0) -> jobqueue.OccurrenceJob:
    """A job placed in rq-scheduler's sorted set (placed in the future, then due `seconds` from now)."""
    job = jobqueue.OccurrenceJob(jobqueue.new_job_id(order_id, "t"), order_id, 1, 1, datetime.now(UTC))
    jobqueue.schedule_occurrence(job._replace(due=datetime.now(UTC) + timedelta(hours=1)))
    jobqueue.connection().zadd(Scheduler.scheduled_jobs_key, {job.job_id: time.time() + seconds})
    return job


def _queued() -> list[str]:
    return jobqueue.queue().get_job_ids()


def test_the_move_leaves_a_job_as_rq_schedulers_own_move_does() -> None:
    ours, theirs = _due_job(1), _due_job(2)
    sched = jobqueue.scheduler()
    sched.enqueue_job(Job.fetch(theirs.job_id, connection=jobqueue.connection()))
    assert jobqueue.move_due_jobs() == 1
    assert sorted(_queued()) == sorted([ours.job_id, theirs.job_id])
    conn = jobqueue.connection()
    assert conn.zcard(Scheduler.scheduled_jobs_key) == 0
    mine, rqs = conn.hgetall(f"rq:job:{ours.job_id}"), conn.hgetall(f"rq:job:{theirs.job_id}")
    assert mine[b"status"] == rqs[b"status"] == b"queued"
    assert set(mine) >= set(rqs) - {b"redis_server_version"}
    assert Job.fetch(ours.job_id, connection=conn).enqueued_at is not None
    assert conn.sismember(jobqueue.QUEUES_SET_KEY, jobqueue.queue().key)


def test_only_the_lease_holder_moves_and_a_standby_takes_over_when_the_lease_expires() -> None:
    active, standby = SchedulerGuard(rebuilds=False, lease_ms=300), SchedulerGuard(rebuilds=False, lease_ms=300)
    standby.host = "elsewhere"  # as another host's scheduler: no claim to the active one's lease
    standby.owner = standby.owner.replace(active.host, "elsewhere", 1)
    assert active.poll().held
    job = _due_job()
    result = standby.poll()
    assert not result.held and result.moved == 0 and result.lease_holder == active.owner
    assert _queued() == []
    result = active.poll()
    assert result.held and result.moved == 1 and _queued() == [job.job_id]

    time.sleep(0.35)  # the active scheduler stopped polling (killed): its lease runs out
    later = _due_job(2)
    result = standby.poll()
    assert result.held and result.acquired and result.moved == 1
    assert later.job_id in _queued()
    # The old one, polling again (it was only paused), does not move: it stands by.
    _due_job(3)
    result = active.poll()
    assert not result.held and result.moved == 0


def test_a_clean_exit_hands_the_lease_over_at_once() -> None:
    active, standby = SchedulerGuard(rebuilds=False), SchedulerGuard(rebuilds=False)
    standby.host = "elsewhere"
    standby.owner = standby.owner.replace(active.host, "elsewhere", 1)
    assert active.poll().held
    assert not standby.poll().held
    active.release()
    assert standby.poll().held
    assert jobqueue.scheduler_lease_holder() == standby.owner


def test_a_restarted_scheduler_takes_the_lease_its_dead_predecessor_on_this_host_left() -> None:
    guard = SchedulerGuard(rebuilds=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobqueue.connection().set(jobqueue.SCHEDULER_LEASE_KEY, f"{guard.host}:{dead.pid}:0123456789ab", px=60_000)
    job = _due_job()
    result = guard.poll()
    assert result.held and result.moved == 1 and _queued() == [job.job_id]


def test_a_lease_of_a_live_scheduler_on_this_host_is_left_alone() -> None:
    guard = SchedulerGuard(rebuilds=False)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        holder = f"{guard.host}:{alive.pid}:0123456789ab"
        jobqueue.connection().set(jobqueue.SCHEDULER_LEASE_KEY, holder, px=60_000)
        assert not guard.poll().held
        assert jobqueue.scheduler_lease_holder() == holder
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.django_db(transaction=True)
def test_a_flushed_redis_is_noticed_at_the_next_poll_and_every_order_gets_its_job_again() -> None:
    user = make_user()
    due = datetime.now(UTC) + timedelta(minutes=10)
    orders = [
        services.order_create(user=user, definition=services.OrderDefinition(order_name=f"o{i}", schedule_time=due))
        for i in range(3)
    ]
    guard = SchedulerGuard(rebuilds=True)
    guard.poll()  # the first poll: finds (or writes) the sentinel
    assert guard.sentinel is not None
    # FLUSHDB, not FLUSHALL: the loss is this database's; the server's other databases may belong to
    # another suite or to a developer's own data.
    jobqueue.connection().flushdb()
    assert not jobqueue.live_job_ids(o.job_id for o in orders)
    guard.poll()
    assert guard._rebuild_thread is not None
    guard._rebuild_thread.join(30)

    job_ids = list(Order.objects.filter(pk__in=[o.pk for o in orders]).values_list("job_id", flat=True))
    assert jobqueue.live_job_ids(job_ids) == set(job_ids)


@pytest.mark.django_db(transaction=True)
def test_orders_due_when_redis_lost_its_data_are_queued_at_once_and_run() -> None:
    user = make_user()
    due = datetime.now(UTC) + timedelta(seconds=1)
    orders = [
        services.order_create(user=user, definition=services.OrderDefinition(order_name=f"o{i}", schedule_time=due))
        for i in range(3)
    ]
    guard = SchedulerGuard(rebuilds=True)
    guard.poll()
    jobqueue.connection().flushdb()
    time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.05)
    guard.poll()
    assert guard._rebuild_thread is not None
    guard._rebuild_thread.join(30)
    assert len(_queued()) == 3  # in the queue, not in the schedule: they are due
    work()
    assert all(o.executions_count == 1 for o in Order.objects.filter(pk__in=[o.pk for o in orders]))


def test_a_scheduler_polling_slowly_gets_a_lease_of_at_least_three_intervals() -> None:
    assert SchedulerGuard(rebuilds=False, lease_ms=1500, interval=0.2).lease_ms == 1500
    assert SchedulerGuard(rebuilds=False, lease_ms=1500, interval=2).lease_ms == 6000


@pytest.mark.django_db(transaction=True)
def test_a_new_redis_run_id_rebuilds_what_a_lagging_replica_lost_even_under_a_copied_reconcile_lease() -> None:
    user = make_user()
    due = datetime.now(UTC) + timedelta(minutes=10)
    order = services.order_create(
        user=user, definition=services.OrderDefinition(order_name="placed just before the failover", schedule_time=due)
    )
    guard = SchedulerGuard(rebuilds=True)
    guard.poll()
    assert guard._rebuild_thread is not None
    guard._rebuild_thread.join(30)
    # The new primary lagged: it has the sentinel and the reconcile lease, but not the latest job.
    jobqueue.cancel(order.job_id)
    assert jobqueue.connection().exists(jobqueue.RECONCILE_LEASE_KEY)
    guard.run_id = "the-old-primary"
    guard._next_run_id_check = 0.0
    guard.poll()
    guard._rebuild_thread.join(30)
    job_id = Order.objects.get(pk=order.pk).job_id
    assert jobqueue.live_job_ids([job_id]) == {job_id}
