"""The one module of the product that imports rq, rq-scheduler and django-rq: the job queue in Redis.

The database is the source of truth; what lives here is a copy of the schedule that reconcile
can rebuild at any time. Nothing in this module touches the database. The connection, queue and
scheduler come from django-rq, so settings.RQ_QUEUES is the one configuration (the workers and the
admin's RQ pages read it too), and every job gets settings.ORDER_JOB_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import django_rq
import redis
from django.conf import settings
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import StartedJobRegistry
from rq_scheduler import Scheduler
from rq_scheduler.utils import to_unix

from orders.recurrence import scheduler_time

logger = logging.getLogger(__name__)

OCCURRENCE_FUNC = "orders.jobs.run_occurrence"
EXECUTION_FUNC = "orders.jobs.run_execution"
HEARTBEAT_KEY = "orders:scheduler:heartbeat"
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# Finished jobs are useless once their effect is in the database: keep them only briefly.
RESULT_TTL_SECONDS = 60

_connection: redis.Redis | None = None


def connection() -> redis.Redis:
    """One client (and connection pool) per process: django-rq builds a new one on every call."""
    global _connection
    if _connection is None:
        _connection = django_rq.get_connection(settings.ORDER_QUEUE)
    return _connection


def reset_connection(client: redis.Redis | None = None) -> None:
    """Drop the process's client (the next call builds a new one), or use `client` instead."""
    global _connection
    _connection = client


def queue() -> Queue:
    # commit_mode="auto": enqueue at once. Every caller already runs after the database commit
    # (orders/dispatch.py); django-rq's default would defer again inside a test's transaction.
    return django_rq.get_queue(settings.ORDER_QUEUE, connection=connection(), commit_mode="auto")


def scheduler(interval: int = 1) -> Scheduler:
    """rq-scheduler for the orders queue; `interval` (whole seconds) sets the life of its lock."""
    return django_rq.get_scheduler(settings.ORDER_QUEUE, queue=queue(), interval=interval, connection=connection())


def job_timeout() -> int:
    # The executor's own limit plus room for the bookkeeping around it (settings.py).
    return int(settings.ORDER_JOB_TIMEOUT_SECONDS)


def new_job_id(order_id: int, label: str) -> str:
    """Job ids are unique per scheduling act, so a re-delivered or replaced job never shares a hash."""
    return f"order-{order_id}-{label}-{uuid.uuid4().hex[:12]}"


def _place(job_id: str, func: str, args: tuple[object, ...], due: datetime | None) -> None:
    """Put a job in the queue now (due is None or past) or in rq-scheduler's sorted set."""
    now = datetime.now(UTC)
    if due is None or scheduler_time(due) <= now:
        queue().enqueue(
            func,
            args=args,
            job_id=job_id,
            job_timeout=job_timeout(),
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=7 * 86400,
        )
    else:
        scheduler().enqueue_at(
            scheduler_time(due),
            func,
            *args,
            job_id=job_id,
            timeout=job_timeout(),
            job_result_ttl=RESULT_TTL_SECONDS,
            queue_name=settings.ORDER_QUEUE,
        )


class OccurrenceJob(NamedTuple):
    """The job that runs grid occurrence `grid_index` of version `version` of an order at `due`."""

    job_id: str
    order_id: int
    version: int
    grid_index: int
    due: datetime


def schedule_occurrence(job: OccurrenceJob) -> None:
    # The pipelined writer: one round trip instead of rq-scheduler's three (every create pays it).
    schedule_occurrences([job])


def schedule_occurrences(jobs: list[OccurrenceJob]) -> None:
    """Many schedule_occurrence calls in one round trip (reconcile rebuilding a lost schedule).

    Future jobs are written exactly as rq-scheduler's enqueue_at writes them (a job hash with status
    "scheduled" and an entry in its sorted set), but through one pipeline; due ones go to the queue.
    """
    now = datetime.now(UTC)
    pipe = connection().pipeline(transaction=False)
    for p in jobs:
        if scheduler_time(p.due) <= now:
            _place(p.job_id, OCCURRENCE_FUNC, (p.order_id, p.version, p.grid_index), None)
            continue
        job = Job.create(
            OCCURRENCE_FUNC,
            args=(p.order_id, p.version, p.grid_index),
            connection=connection(),
            id=p.job_id,
            timeout=job_timeout(),
            result_ttl=RESULT_TTL_SECONDS,
            status=JobStatus.SCHEDULED,
        )
        job.origin = settings.ORDER_QUEUE
        job.save(pipeline=pipe)
        pipe.zadd(Scheduler.scheduled_jobs_key, {p.job_id: to_unix(scheduler_time(p.due))})
    pipe.execute()


def schedule_execution(*, job_id: str, execution_id: int, attempt: int, due: datetime | None) -> None:
    """A job for one attempt of a given execution row (manual runs, retries)."""
    _place(job_id, EXECUTION_FUNC, (execution_id, attempt), due)


def cancel(job_id: str) -> None:
    """Remove a job so it never starts. A job already started is left alone: it re-reads the order
    and sees that its definition is gone."""
    if not job_id:
        return
    conn = connection()
    conn.zrem(Scheduler.scheduled_jobs_key, job_id)
    try:
        job = Job.fetch(job_id, connection=conn)
    except Exception:  # noqa: BLE001 - a missing or unreadable job is already cancelled
        return
    if job.get_status(refresh=False) == JobStatus.STARTED:
        return
    queue().remove(job_id)
    job.delete(remove_from_queue=False)


def discard(job_ids: Iterable[str]) -> int:
    """Drop jobs that have not been handed to a worker yet, in two round trips (an execution batch
    took their orders itself). Returns how many were dropped.

    Best effort: a job a worker already popped is left alone, and a job rq-scheduler is moving at
    this instant (it reads the job, pushes it to the queue, then removes it from its set) can be
    written back by rq-scheduler after the hash is deleted here. Either way the job runs, re-reads
    its order under the lock and finds its slot taken: no effect."""
    ids = [j for j in job_ids if j]
    if not ids:
        return 0
    conn = connection()
    queue_key = queue().key
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.lrem(queue_key, 1, job_id)
        pipe.zrem(Scheduler.scheduled_jobs_key, job_id)
    replies = pipe.execute()
    gone = [job_id for i, job_id in enumerate(ids) if replies[2 * i] or replies[2 * i + 1]]
    if gone:
        conn.delete(*[Job.key_for(job_id) for job_id in gone])
    return len(gone)


def live_job_ids(job_ids: Iterable[str]) -> set[str]:
    """Which of these jobs are alive in Redis (scheduled, queued, started or deferred)."""
    ids = [j for j in job_ids if j]
    if not ids:
        return set()
    conn = connection()
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.zscore(Scheduler.scheduled_jobs_key, job_id)
        pipe.hget(f"rq:job:{job_id}", "status")
    replies = pipe.execute()
    live: set[str] = set()
    for i, job_id in enumerate(ids):
        score, status = replies[2 * i], replies[2 * i + 1]
        if status is None:
            continue
        if status.decode() == JobStatus.SCHEDULED:
            # rq-scheduler writes the hash, then the sorted-set entry: only both make it live.
            if score is not None:
                live.add(job_id)
        elif status.decode() in LIVE_STATUSES:
            live.add(job_id)
    return live


def all_order_job_ids() -> set[str]:
    """Every order job id known to the schedule or the queue (for reconcile's orphan sweep)."""
    conn = connection()
    raw: list[bytes] = conn.zrange(Scheduler.scheduled_jobs_key, 0, -1)  # type: ignore[assignment]
    ids = {j.decode() for j in raw}
    ids.update(queue().get_job_ids())
    return {j for j in ids if j.startswith("order-")}


def clean_started_registry() -> None:
    """Let rq move jobs of dead workers out of the started registry (marks them abandoned)."""
    StartedJobRegistry(queue=queue()).cleanup()


RECONCILE_LEASE_KEY = "orders:reconcile:lease"


def acquire_reconcile_lease(*, ttl: int, force: bool = False) -> str | None:
    """One reconcile per period across all schedulers: the first to set the key runs it."""
    token = uuid.uuid4().hex
    if force:
        connection().set(RECONCILE_LEASE_KEY, token, ex=ttl)
        return token
    return token if connection().set(RECONCILE_LEASE_KEY, token, nx=True, ex=ttl) else None


def release_reconcile_lease(token: str) -> None:
    """Give the lease back (after a failed pass) if it is still ours."""
    with contextlib.suppress(redis.RedisError):
        if connection().get(RECONCILE_LEASE_KEY) == token.encode():
            connection().delete(RECONCILE_LEASE_KEY)


def write_heartbeat() -> None:
    connection().set(HEARTBEAT_KEY, repr(time.time()), ex=120)


def read_heartbeat() -> float | None:
    raw = connection().get(HEARTBEAT_KEY)
    return float(raw) if raw is not None else None


def live_worker_count() -> int:
    """Workers registered on this Redis that are not suspended (for /healthz)."""
    return sum(1 for worker in Worker.all(connection=connection()) if worker.get_state() != "suspended")


def scheduled_count() -> int:
    return int(connection().zcard(Scheduler.scheduled_jobs_key))
