"""Placing and cancelling an order's Redis jobs after the database commits.

rq-scheduler writes to Redis at once, outside any database transaction, so every write here is
registered with transaction.on_commit: a rolled-back change places no job. The caller holds the
order's row lock and saves the fields set here (job_id, next_run_at, next_grid_index). Services,
the engine and repair place jobs only through this module; only it (and repair's and health's
reads) calls orders/jobqueue.py. It also names the process that holds a run (worker liveness).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from orders import jobqueue
from orders.models import Execution, Order
from orders.recurrence import ScheduleOverflow, occurrence_due

logger = logging.getLogger(__name__)


def worker_holder() -> str:
    """This process's id as the holder of the runs it takes; its heartbeat in Redis says it is alive
    (orders/jobqueue.py, worker liveness)."""
    return jobqueue.worker_holder()


def note_companion_began(execution_id: int, began_at: datetime) -> bool:
    """Note in Redis, before a batch companion's executor begins, that this process began it (see
    engine.run_occurrence_batch); False when Redis could not take the note."""
    try:
        jobqueue.note_began(jobqueue.worker_holder(), execution_id, began_at.timestamp())
    except Exception:
        logger.warning("could not note a companion's start in Redis; writing it to its row", exc_info=True)
        return False
    return True


def forget_companions_began() -> None:
    """Drop this process's notes once its batch's outcomes are recorded (best effort: they expire)."""
    redis_safely(jobqueue.forget_began, jobqueue.worker_holder())


# The job of one grid occurrence (see orders/jobqueue.py); a batch collects them in a list.
OccurrenceJob = jobqueue.OccurrenceJob


def redis_safely(func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """Call a Redis write, logging instead of raising when Redis is down: the database still holds
    the truth and reconcile (run by the scheduler every minute) places the job once Redis is back."""
    try:
        func(*args, **kwargs)
    except Exception:
        logger.warning("Redis write failed; reconcile will repair it", exc_info=True)


def occurrence_job_for(order: Order, *, due: datetime) -> OccurrenceJob:
    """A new job for the order's pending occurrence (next_grid_index); sets order.job_id.

    An order not saved yet gets a job id without its primary key (jobqueue.new_job_id), and the job
    its id once the INSERT has run: see schedule_next_occurrence."""
    order.job_id = jobqueue.new_job_id(order.pk, f"v{order.schedule_version}-k{order.next_grid_index}")
    return OccurrenceJob(order.job_id, order.pk, order.schedule_version, order.next_grid_index, due)


def schedule_next_occurrence(order: Order, *, grid_index: int, jobs: list[OccurrenceJob] | None = None) -> None:
    """Point the order at grid occurrence `grid_index` and place its job after commit.

    A caller taking many orders at once passes `jobs` and hands them to place_occurrence_jobs
    (one pipeline) instead. An occurrence past what can be represented leaves the order with none.
    """
    try:
        due = occurrence_due(order.grid, grid_index)
    except ScheduleOverflow:
        order.next_run_at = None
        order.job_id = ""
        return
    order.next_grid_index = grid_index
    order.next_run_at = due
    job = occurrence_job_for(order, due=due)
    if jobs is not None:
        jobs.append(job)
        return
    if order.pk is None:
        # A create schedules before its INSERT (one statement carrying the job id); by the commit
        # the row has its primary key.
        transaction.on_commit(lambda: redis_safely(jobqueue.schedule_occurrence, job._replace(order_id=order.pk)))
        return
    transaction.on_commit(lambda: redis_safely(jobqueue.schedule_occurrence, job))


def postpone_occurrence(order: Order, seconds: float) -> None:
    """Move the order's pending occurrence job `seconds` later without changing its due time
    (saves order.job_id)."""
    job = occurrence_job_for(order, due=timezone.now() + timedelta(seconds=seconds))
    order.save(update_fields=["job_id"])
    transaction.on_commit(lambda: redis_safely(jobqueue.schedule_occurrence, job))


# --- the early hand-off (orders/engine.py, wait_until_due) ------------------------------------------


def current_job_id() -> str:
    return jobqueue.current_job_id()


def note_waiting_if_early(job_id: str, *, order_id: int, version: int, grid_index: int) -> datetime | None:
    """The instant of `job_id` if the scheduler moved it ahead of it and it is still to come, with
    this process named as the one waiting for it (a worker killed in its wait is then noticed like
    one killed in a run: repair.recover_abandoned). None: due now, or Redis could not tell (the take
    still refuses a run before its instant)."""
    try:
        due = jobqueue.note_waiting_if_early(
            job_id, jobqueue.WaitNote(jobqueue.worker_holder(), order_id, version, grid_index)
        )
    except Exception:
        logger.warning("could not read an early job's instant in Redis; taking it without waiting", exc_info=True)
        return None
    return datetime.fromtimestamp(due, UTC) if due is not None else None


def forget_waiting(job_id: str) -> None:
    redis_safely(jobqueue.forget_waiting, job_id)


def due_work_waiting() -> str | None:
    """A due job waiting in the queue, at its head or behind jobs moved early (None also when Redis
    cannot tell)."""
    try:
        return jobqueue.due_work_waiting()
    except Exception:  # noqa: BLE001 - the wait goes on; the take and its lock decide anyway
        return None


def hand_back_occurrence(*, order_id: int, version: int, grid_index: int, due: datetime, behind: str) -> bool:
    """Give the occurrence this worker waits for back to the queue, as a new job right behind the due
    job `behind`, which goes to the head: that job does not wait for this one's instant. The order points at the new job
    first (one conditional UPDATE: reconcile's orphan sweep drops a job no row names); an order that
    moved on meanwhile needs nothing given back. False: Redis refused; keep waiting (the order then
    names a job that is not there, which reconcile replaces; whichever job runs first takes the slot
    under the row lock, the other finds it taken)."""
    job_id = jobqueue.new_job_id(order_id, f"v{version}-k{grid_index}-back")
    pending = Order.objects.filter(pk=order_id, schedule_version=version, next_grid_index=grid_index)
    if not pending.update(job_id=job_id):
        return True
    try:
        jobqueue.hand_back(OccurrenceJob(job_id, order_id, version, grid_index, due), behind=behind)
    except Exception:
        logger.warning("could not hand a job back to the queue; waiting for its instant", exc_info=True)
        return False
    return True


def place_occurrence_jobs(jobs: list[OccurrenceJob], *, at_front: bool = False) -> None:
    """Write these occurrence jobs to Redis in one pipeline after commit (`at_front`: those due go
    ahead of the jobs waiting, as a run taken back from a dead worker does)."""
    if jobs:
        transaction.on_commit(lambda: redis_safely(jobqueue.schedule_occurrences, jobs, at_front=at_front))


def schedule_execution_job(execution: Execution, *, due: datetime | None, at_front: bool = False) -> None:
    """Place a job for the execution's next attempt after commit (at once when `due` is None; with
    `at_front`, ahead of the jobs already waiting: a run taken back from a dead worker is late
    already, and must not wait behind a backlog); sets execution.job_id, which the caller saves."""
    attempt = execution.attempts + 1
    job_id = jobqueue.new_job_id(execution.order_id, f"x{execution.occurrence}-a{attempt}")
    execution.job_id = job_id
    execution_id = execution.pk
    transaction.on_commit(
        lambda: redis_safely(
            jobqueue.schedule_execution,
            job_id=job_id,
            execution_id=execution_id,
            attempt=attempt,
            due=due,
            at_front=at_front,
        )
    )


def cancel_job_after_commit(job_id: str) -> None:
    """Remove a job from Redis once the change that made it stale has committed."""
    if job_id:
        transaction.on_commit(lambda: redis_safely(jobqueue.cancel, job_id))


def discard_jobs_after_commit(job_ids: Iterable[str]) -> None:
    """Drop jobs not yet handed to a worker (their orders were taken by a batch), after commit."""
    ids = list(job_ids)
    if ids:
        transaction.on_commit(lambda: redis_safely(jobqueue.discard, ids))
