"""A future job's hash is written directly (orders/jobqueue.py, _scheduled_job_fields), not through
rq's Job.create + save: it must hold what rq itself writes for the same job, field by field and in
the same order, so that rq-scheduler moves it and a worker runs it as a job rq wrote."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from rq.job import Job, JobStatus
from rq.utils import utcparse
from rq_scheduler import Scheduler

from orders import jobqueue, services
from orders.models import Execution, Order
from tests.conftest import make_user
from tests.engine_helpers import work

TIMESTAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def _hash(job_id: str) -> list[tuple[bytes, bytes]]:
    """The job's hash as Redis returns it (a small hash keeps its fields in insertion order)."""
    raw: dict[bytes, bytes] = jobqueue.connection().hgetall(Job.key_for(job_id))  # type: ignore[assignment]
    return list(raw.items())


def _saved_by_rq(job_id: str, func: str, args: tuple[object, ...], *, early: bool) -> None:
    """The job as the writer wrote it before, through rq's own Job.create and save."""
    job = Job.create(
        func,
        args=args,
        connection=jobqueue.connection(),
        id=job_id,
        timeout=jobqueue.job_timeout(),
        result_ttl=jobqueue.RESULT_TTL_SECONDS,
        status=JobStatus.SCHEDULED,
    )
    job.origin = settings.ORDER_QUEUE
    job.save()
    if early:
        jobqueue.connection().hset(job.key, jobqueue.HANDOFF_EARLY_FIELD, "1")


def _assert_same_job(ours: str, rqs: str) -> None:
    mine, theirs = _hash(ours), _hash(rqs)
    assert [field for field, _ in mine] == [field for field, _ in theirs]
    differing = [field for (field, a), (_, b) in zip(mine, theirs, strict=True) if a != b]
    assert differing in ([], [b"created_at"])  # the instant each was written, nothing else
    written = dict(mine)[b"created_at"]
    assert TIMESTAMP.fullmatch(written)
    assert abs(utcparse(written.decode()).replace(tzinfo=UTC) - datetime.now(UTC)) < timedelta(seconds=30)
    conn = jobqueue.connection()
    assert conn.ttl(Job.key_for(ours)) == conn.ttl(Job.key_for(rqs)) == -1


def test_an_occurrence_job_is_the_hash_rq_writes_for_it_with_the_hand_off_mark() -> None:
    due = datetime.now(UTC) + timedelta(days=3)
    job = jobqueue.OccurrenceJob(jobqueue.new_job_id(None, "t"), 4242, 3, 17, due)
    jobqueue.schedule_occurrence(job)
    _saved_by_rq("reference", jobqueue.OCCURRENCE_FUNC, (4242, 3, 17), early=True)
    _assert_same_job(job.job_id, "reference")
    assert dict(_hash(job.job_id))[jobqueue.HANDOFF_EARLY_FIELD.encode()] == b"1"
    score = jobqueue.connection().zscore(Scheduler.scheduled_jobs_key, job.job_id)
    assert score == pytest.approx(due.timestamp(), abs=1e-6)


def test_a_retry_job_is_the_hash_rq_writes_for_it_without_the_hand_off_mark() -> None:
    due = datetime.now(UTC) + timedelta(minutes=5)
    jobqueue.schedule_execution(job_id="order-7-x1-a2", execution_id=99, attempt=2, due=due)
    _saved_by_rq("reference", jobqueue.EXECUTION_FUNC, (99, 2), early=False)
    _assert_same_job("order-7-x1-a2", "reference")
    assert jobqueue.HANDOFF_EARLY_FIELD.encode() not in dict(_hash("order-7-x1-a2"))


def test_a_bad_job_id_is_refused_before_anything_is_written() -> None:
    due = datetime.now(UTC) + timedelta(minutes=5)
    with pytest.raises(ValueError):
        jobqueue.schedule_execution(job_id="order 7:a", execution_id=99, attempt=2, due=due)
    assert jobqueue.connection().dbsize() == 0


@pytest.mark.django_db(transaction=True)
def test_a_created_orders_job_is_moved_by_rq_scheduler_and_run_by_a_worker() -> None:
    when = (datetime.now(UTC) + timedelta(seconds=1.5)).replace(microsecond=0)
    order = services.order_create(
        user=make_user(), definition=services.OrderDefinition(order_name="written directly", schedule_time=when)
    )
    args = (order.pk, order.schedule_version, order.next_grid_index)
    _saved_by_rq("reference", jobqueue.OCCURRENCE_FUNC, args, early=True)
    _assert_same_job(order.job_id, "reference")
    jobqueue.connection().delete(Job.key_for("reference"))
    time.sleep(max(0.0, when.timestamp() + 1 - time.time()))  # rq-scheduler compares whole seconds
    jobqueue.scheduler().enqueue_jobs()  # rq-scheduler's own pass: Job.fetch, then enqueue
    assert jobqueue.queue().get_job_ids() == [order.job_id]
    assert jobqueue.connection().zcard(Scheduler.scheduled_jobs_key) == 0
    work()
    assert [e.status for e in Execution.objects.filter(order_id=order.pk)] == ["succeeded"]
    assert Order.objects.get(pk=order.pk).status == "completed"
