"""Running orders: taking a due occurrence or a waiting execution, running the executor, recording
the outcome, and execution batches. What the RQ jobs (orders/jobs.py) call; repair (orders/repair.py)
records abandoned runs through execution_finish.

Delivery is at-least-once (a job can be handed out twice, a worker can die mid-run); the effect is
once per occurrence because every step re-reads the order under a row lock and checks that the job
still describes the order's current state:
- an occurrence job carries (order id, schedule version, grid index) and is taken only while the
  order still points at exactly that slot of exactly that definition;
- an execution job (manual run, retry) carries (execution id, attempt) and is taken only while the
  execution waits for exactly that attempt.
Taking an occurrence writes the Execution row (unique per order and occurrence), counts it and
schedules the following occurrence in the same transaction; the executor runs outside any
transaction; finishing records the outcome under the lock again.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string

from common import tracing
from orders import metrics, sql
from orders.dispatch import (
    OccurrenceJob,
    current_job_id,
    discard_jobs_after_commit,
    due_work_waiting,
    forget_companions_began,
    forget_waiting,
    hand_back_occurrence,
    note_companion_began,
    note_waiting_if_early,
    place_occurrence_jobs,
    postpone_occurrence,
    schedule_execution_job,
    schedule_next_occurrence,
    worker_holder,
)
from orders.events import log_event
from orders.executors import ExecutionContext, ExecutionFailed, ExecutionResult
from orders.models import (
    ACTIVE_ORDER_STATUSES,
    FINISHED_ORDER_STATUSES,
    INFLIGHT_EXECUTION_STATUSES,
    WAITING_EXECUTION_STATUSES,
    Execution,
    ExecutionKind,
    ExecutionStatus,
    MisfirePolicy,
    Order,
    OrderStatus,
    OverlapPolicy,
)
from orders.notifications import Notice, deliver, notify_occurrence_failed
from orders.recurrence import ScheduleOverflow, first_index_due_after, is_misfire, occurrence_due
from orders.status import (
    POLICY_FIELDS,
    count_outcome_and_notify,
    count_success_and_notify,
    settle_status_and_notify,
)

logger = logging.getLogger(__name__)

# A job that arrives this little ahead of its due time (rq-scheduler's whole-second storage) waits
# in place; one that arrives earlier is put back in the schedule.
EARLY_WAIT_LIMIT_SECONDS = 2.0
# While waiting for an early job, look this often for a due job waiting behind it (wait_until_due).
HANDOFF_CHECK_SECONDS = 0.02
# Sleep this much past an instant: time.sleep can return a hair early on some clocks, and the take
# refuses a run before its instant (it would put the job back in the schedule).
WAKE_MARGIN_SECONDS = 0.0005
# How long an occurrence waits when the previous run of the same order is still going.
OVERLAP_POSTPONE_SECONDS = 1.0
# A batch companion starts at most this long after a read found its order unchanged (see
# _still_current_companions).
RECHECK_SECONDS = 0.005
# Skipped occurrences recorded one by one per catch-up (the rest are summarised in the log).
MAX_SKIPPED_ROWS = 1000
# Why a slot was skipped, shown in the history.
MISFIRE_SKIP_REASON = "missed: it fell due while the service was down or the order paused"
OVERLAP_SKIP_REASON = "the previous run (#{occurrence}) was still running"


T = TypeVar("T")


def _sleep_until(due: datetime) -> None:
    """Return at `due` or later, never before it (the take refuses a run before its instant, and a
    companion taken ahead must not start before it either)."""
    while (left := (due - timezone.now()).total_seconds()) > 0:
        time.sleep(left + WAKE_MARGIN_SECONDS)


@dataclass
class Taken:
    execution_id: int
    attempt: int
    context: ExecutionContext
    job_id: str = ""
    # Taken by a batch (not by its own job), at the order's schedule_version `version`.
    is_companion: bool = False
    version: int = 0


def _lease_deadline(now: datetime) -> datetime:
    return now + timedelta(seconds=settings.ORDER_JOB_TIMEOUT_SECONDS + 5)


def _context(order: Order, execution: Execution) -> ExecutionContext:
    return ExecutionContext(
        order_id=order.pk,
        user_id=order.user_id,
        order_name=order.order_name,
        occurrence=execution.occurrence,
        attempt=execution.attempts,
        scheduled_for=execution.scheduled_for,
        idempotency_key=f"order-{order.pk}-occurrence-{execution.occurrence}",
        target_url=order.target_url,
        payload=order.payload,
    )


def _record_skipped(order: Order, first: int, stop: int, now: datetime, *, reason: str = MISFIRE_SKIP_REASON) -> None:
    """Record grid slots first..stop-1 as skipped, for `reason` (they do not count as executions)."""
    grid = order.grid
    rows = []
    for k in range(first, min(stop, first + MAX_SKIPPED_ROWS)):
        order.occurrence_seq += 1
        rows.append(
            Execution(
                order=order,
                occurrence=order.occurrence_seq,
                kind=ExecutionKind.SCHEDULED,
                schedule_version=order.schedule_version,
                grid_index=k,
                scheduled_for=occurrence_due(grid, k),
                status=ExecutionStatus.SKIPPED,
                finished_at=now,
                skip_reason=reason[:200],
            )
        )
    Execution.objects.bulk_create(rows)
    metrics.count_skipped(stop - first)
    log_event(
        "skipped",
        order_id=order.pk,
        user_id=order.user_id,
        status="skipped",
        occurrence=rows[0].occurrence if rows else None,
        grid_from=first,
        grid_to=stop - 1,
        count=stop - first,
        reason=reason,
    )


@transaction.atomic
def occurrence_take(*, order_id: int, version: int, grid_index: int) -> Taken | None:
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    if order is None or order.schedule_version != version or order.next_grid_index != grid_index:
        return None  # deleted, redefined, paused/resumed, or this slot was already taken
    if order.status not in ACTIVE_ORDER_STATUSES or not order.has_runs_left:
        return None
    now = timezone.now()
    grid = order.grid
    due = occurrence_due(grid, grid_index)
    if now < due:
        postpone_occurrence(order, (due - now).total_seconds())
        return None
    # The order's overlap policy decides what a run still going means ("allow": nothing).
    running = (
        None
        if order.overlap_policy == OverlapPolicy.ALLOW
        else Execution.objects.filter(order=order, status=ExecutionStatus.RUNNING)
        .values_list("occurrence", flat=True)
        .first()
    )
    if running is not None and order.overlap_policy == OverlapPolicy.WAIT:
        # Wait for the one in progress.
        postpone_occurrence(order, OVERLAP_POSTPONE_SECONDS)
        return None

    run_this = True
    next_index = grid_index + 1
    if running is not None:
        # "skip": this slot, and any after it already due, fell inside the run in progress.
        run_this = False
        next_index = first_index_due_after(grid, now, from_index=grid_index + 1)
        _record_skipped(order, grid_index, next_index, now, reason=OVERLAP_SKIP_REASON.format(occurrence=running))
    elif is_misfire(grid, grid_index, now, settings.ORDER_MISFIRE_GRACE_SECONDS):
        ahead = first_index_due_after(grid, now, from_index=grid_index + 1)
        if order.misfire_policy == MisfirePolicy.SKIP:
            run_this = False
            _record_skipped(order, grid_index, ahead, now)
            next_index = ahead
        elif order.misfire_policy == MisfirePolicy.RUN_ONCE:
            # This late run is the one catch-up run; the slots it stands for are skipped.
            _record_skipped(order, grid_index + 1, ahead, now)
            next_index = ahead
        # run_all: every missed slot runs in turn, each scheduled as soon as the previous is taken.

    taken: Taken | None = None
    fields = ["occurrence_seq", "next_grid_index", "next_run_at", "job_id", "status", "updated_at"]
    if run_this:
        # Its executor begins right after this commit: the attempt counts from here.
        execution = _start_occurrence(order, grid_index=grid_index, due=due, now=now, began=True)
        execution.save()
        fields += ["executions_count", "last_run_at"]
        taken = Taken(execution.pk, 1, _context(order, execution))
        _log_started(taken, job_id=execution.job_id, started_at=now)
    _advance(order, next_index=next_index)
    order.status = OrderStatus.RUNNING if run_this else order.status
    if not run_this:
        settle_status_and_notify(order)
    order.save(update_fields=fields)
    return taken


def _start_occurrence(order: Order, *, grid_index: int, due: datetime, now: datetime, began: bool) -> Execution:
    """Count occurrence `grid_index` as taken now by this process (caller holds the lock, saves both
    rows); `began`: its executor begins at once (a job's own run), else later (a batch companion,
    whose start is written by mark_began just before its executor)."""
    order.occurrence_seq += 1
    order.executions_count += 1
    order.last_run_at = now
    return Execution(
        order=order,
        occurrence=order.occurrence_seq,
        kind=ExecutionKind.SCHEDULED,
        schedule_version=order.schedule_version,
        grid_index=grid_index,
        scheduled_for=due,
        started_at=now if began else None,
        began_at=now if began else None,
        holder=worker_holder(),
        status=ExecutionStatus.RUNNING,
        attempts=1,
        lease_expires_at=_lease_deadline(now),
        job_id=order.job_id,
    )


def _advance(order: Order, *, next_index: int, jobs: list[OccurrenceJob] | None = None) -> None:
    """Point the order at its next grid slot (and job), or at nothing when the grid is done."""
    if order.is_recurring and order.has_runs_left:
        try:
            occurrence_due(order.grid, next_index)
            schedule_next_occurrence(order, grid_index=next_index, jobs=jobs)
            return
        except ScheduleOverflow:
            pass
    # Nothing more on the grid; moving the index makes any duplicate of this job stale.
    order.next_grid_index, order.next_run_at, order.job_id = next_index, None, ""


def _log_started(taken: Taken, *, job_id: str, started_at: datetime) -> None:
    context = taken.context
    log_event(
        "started",
        order_id=context.order_id,
        user_id=context.user_id,
        job_id=job_id,
        occurrence=context.occurrence,
        attempt=taken.attempt,
        status=ExecutionStatus.RUNNING,
        scheduled_for=context.scheduled_for.isoformat(),
        started_at=started_at.isoformat(),
    )


@transaction.atomic
def execution_take(*, execution_id: int, attempt: int) -> Taken | None:
    order_id = Execution.objects.filter(pk=execution_id).values_list("order_id", flat=True).first()
    if order_id is None:
        return None
    # Lock order before execution, everywhere, so that no two paths can deadlock.
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
    if order is None or execution is None:
        return None
    if execution.status not in WAITING_EXECUTION_STATUSES:
        return None
    if execution.attempts != attempt - 1 or order.status == OrderStatus.PAUSED:
        return None
    now = timezone.now()
    # A manual run or a retry is never skipped: under "skip" too it waits for the run in progress.
    if (
        order.overlap_policy != OverlapPolicy.ALLOW
        and Execution.objects.filter(order=order, status=ExecutionStatus.RUNNING).exists()
    ):
        schedule_execution_job(execution, due=now + timedelta(seconds=OVERLAP_POSTPONE_SECONDS))
        execution.save(update_fields=["job_id"])
        return None
    execution.status = ExecutionStatus.RUNNING
    execution.attempts = attempt
    execution.started_at = execution.started_at or now
    execution.began_at = now  # its executor begins right after this commit
    execution.holder = worker_holder()
    execution.lease_expires_at = _lease_deadline(now)
    execution.save(update_fields=["status", "attempts", "started_at", "began_at", "holder", "lease_expires_at"])
    order.status = OrderStatus.RUNNING
    order.last_run_at = now
    order.save(update_fields=["status", "last_run_at", "updated_at"])
    taken = Taken(execution.pk, attempt, _context(order, execution))
    _log_started(taken, job_id=execution.job_id, started_at=now)
    return taken


def retry_delay_seconds(attempt: int) -> float:
    """Exponential backoff after the given failed attempt: base, 2 x base, 4 x base, ... capped."""
    delay: float = settings.ORDER_RETRY_BASE_DELAY_SECONDS * (2 ** (attempt - 1))
    return float(min(delay, settings.ORDER_RETRY_MAX_DELAY_SECONDS))


@transaction.atomic
def execution_finish(
    *,
    execution_id: int,
    attempt: int,
    result_ref: str = "",
    error: str = "",
    order_id: int | None = None,
    started_at: datetime | None = None,
    retryable: bool = True,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
    urgent: bool = False,
) -> None:
    """Record the outcome of one attempt. A failure is retried until ORDER_MAX_ATTEMPTS attempts,
    unless it is not `retryable` (it fails for good at once); `retry_after` seconds, when given,
    replace the backoff delay; `details` (a webhook's status, latency, response) go into the history;
    `urgent`: the retry's job goes ahead of the queue (a run taken back from a dead worker).

    `order_id` is the execution's order when the caller knows it (it saves a query per execution);
    `started_at` is when the attempt's executor really began, if later than the take."""
    if order_id is None:
        order_id = Execution.objects.filter(pk=execution_id).values_list("order_id", flat=True).first()
    if order_id is None:
        return
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
    if order is None or execution is None or execution.order_id != order.pk:
        return  # deleted while running: nothing to record
    if execution.status != ExecutionStatus.RUNNING or execution.attempts != attempt:
        logger.warning("discarding a late outcome for execution %s attempt %s", execution_id, attempt)
        return
    _record_attempt(
        order,
        execution,
        attempt=attempt,
        now=timezone.now(),
        result_ref=result_ref,
        error=error,
        started_at=started_at,
        retryable=retryable,
        retry_after=retry_after,
        details=details,
        urgent=urgent,
    )
    execution.save()
    settle_status_and_notify(order)
    paused = count_outcome_and_notify(order, execution)
    order.save(update_fields=[*POLICY_FIELDS, "last_result", "next_run_at", "updated_at"])
    if execution.status == ExecutionStatus.FAILED and order.status != OrderStatus.FAILED and not paused:
        notify_occurrence_failed(order, execution.occurrence, execution.error)
    _log_if_finished(order)


@dataclass
class Outcome:
    taken: Taken
    started_at: datetime
    result_ref: str = ""
    error: str = ""
    retryable: bool = True
    retry_after: float | None = None
    details: dict[str, Any] | None = None


def _outcome(taken: Taken, started_at: datetime, value: object) -> Outcome:
    """An executor's return value or exception as the outcome of the attempt."""
    outcome = Outcome(taken, started_at)
    if isinstance(value, ExecutionFailed):
        outcome.error = str(value) or type(value).__name__
        outcome.retryable, outcome.retry_after, outcome.details = value.retryable, value.retry_after, value.details
    elif isinstance(value, BaseException):
        outcome.error = f"{type(value).__name__}: {value}"
    elif isinstance(value, ExecutionResult):
        outcome.result_ref, outcome.details = value.ref, value.details
    else:
        outcome.result_ref = str(value or "")
    return outcome


def _run_executor(taken: Taken, *, started_at: datetime | None = None) -> Outcome:
    executor = import_string(settings.ORDER_EXECUTOR)
    started_at = started_at or timezone.now()
    try:
        with _execution_span(taken):
            value: object = executor(taken.context)
    except Exception as exc:  # noqa: BLE001 - any executor failure is an attempt that failed
        value = exc
    return _outcome(taken, started_at, value)


def _run_executors_together(executor: Any, takens: list[Taken], *, started_at: datetime) -> list[Outcome]:
    """A batch-capable executor's run_many over these attempts: one outcome each, in order."""
    try:
        # The batch's span is the first run's (under its job's span); the companions' deliveries
        # overlap inside it and get no span of their own.
        with _execution_span(takens[0]):
            values: list[object] = list(executor.run_many([t.context for t in takens]))
        if len(values) != len(takens):
            raise RuntimeError(f"run_many returned {len(values)} values for {len(takens)} executions")
    except Exception as exc:  # noqa: BLE001 - the whole batch's attempts failed
        values = [exc] * len(takens)
    return [_outcome(t, started_at, v) for t, v in zip(takens, values, strict=True)]


def _execution_span(taken: Taken) -> AbstractContextManager[None]:
    """The executor's span: under the job's span, or for a batch companion in its own order's trace."""
    order_id = taken.context.order_id
    return tracing.span(
        "execute_order",
        traceparent=(
            (lambda: Order.objects.filter(pk=order_id).values_list("trace_context", flat=True).first() or "")
            if taken.is_companion
            else None
        ),
        attributes={"order.id": order_id, "execution.occurrence": taken.context.occurrence, "attempt": taken.attempt},
    )


# --- recording outcomes through a database outage ---------------------------------------------------
#
# An executor that has run has had its effect; if its outcome cannot be recorded (MariaDB restarted,
# failed over, a network cut; or a deadlock or lock wait timeout), the worker is still alive, so its
# heartbeat keeps repair from taking the runs back, and they would stay `running` until their
# last-resort lease ran out (65 s by default) and then run a second time. Instead the worker keeps
# the outcomes it has and records them once the database answers again.
#
# A retry is harmless when the failed commit had in fact landed (its acknowledgement lost with the
# connection): every recorder re-reads the execution under its row lock and does nothing unless it
# is still running that very attempt (execution_finish, _finish_succeeded, _hand_back). The jobs a
# landed commit would have placed after commit (a retry, a handed-back run) are then missing; the
# reconcile places the job of every pending run that has none.
#
# A job's take waits through an outage too (occurrence_take_through_outage and
# execution_take_through_outage, with its due-time read): a worker between jobs would
# otherwise fail every job it dequeued while the database was away, in milliseconds each, and
# their orders would wait for the reconcile (60 s by default).
OUTCOME_RETRY_ERRORS = (OperationalError, InterfaceError)
OUTCOME_RETRY_FIRST_DELAY_SECONDS = 0.25
OUTCOME_RETRY_MAX_DELAY_SECONDS = 1.0


def _drop_connection() -> None:
    """Close the connection an error broke, so that the next query opens a new one."""
    # Closing a connection the server already dropped can fail too: it is gone either way.
    with suppress(DatabaseError):
        connection.close()


def retry_through_outage(record: Callable[[], T], *, what: str) -> T:
    """record() (a transaction recording outcomes, or a take), retried on a database-unavailable error with a
    capped backoff for up to ORDER_OUTCOME_RETRY_SECONDS, which ends before the job's timeout and the
    runs' lease (see above). One warning when the outage begins and one when it ends. Inside a
    transaction of the caller there is nothing to retry (that transaction is lost): it raises."""
    failed_at = deadline = 0.0
    delay = OUTCOME_RETRY_FIRST_DELAY_SECONDS
    tries = 0
    while True:
        try:
            result = record()
        except OUTCOME_RETRY_ERRORS as exc:
            if connection.in_atomic_block:
                raise
            tries += 1
            now = time.monotonic()
            if tries == 1:
                failed_at, deadline = now, now + float(settings.ORDER_OUTCOME_RETRY_SECONDS)
                logger.warning("database unavailable for %s (%s); retrying until it answers", what, exc)
            _drop_connection()
            if now >= deadline:
                logger.error("gave up on %s after %d tries: %s", what, tries, exc)
                raise
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, OUTCOME_RETRY_MAX_DELAY_SECONDS)
            continue
        if tries:
            logger.warning("database back for %s after %d tries (%.1f s)", what, tries, time.monotonic() - failed_at)
        return result


def occurrence_take_through_outage(*, order_id: int, version: int, grid_index: int) -> Taken | None:
    """occurrence_take, waiting for the database while it is unavailable (see above)."""
    return _take_through_outage(
        partial(occurrence_take, order_id=order_id, version=version, grid_index=grid_index),
        Q(order_id=order_id, schedule_version=version, grid_index=grid_index, attempts=1),
        what=f"order {order_id}'s slot {grid_index}",
    )


def execution_take_through_outage(*, execution_id: int, attempt: int) -> Taken | None:
    """execution_take, waiting for the database while it is unavailable (see above)."""
    return _take_through_outage(
        partial(execution_take, execution_id=execution_id, attempt=attempt),
        Q(pk=execution_id, attempts=attempt),
        what=f"execution {execution_id} attempt {attempt}",
    )


def _take_through_outage(take: Callable[[], Taken | None], slot: Q, *, what: str) -> Taken | None:
    failed = False

    def take_noting_failures() -> Taken | None:
        nonlocal failed
        try:
            return take()
        except OUTCOME_RETRY_ERRORS:
            failed = True
            raise

    taken = retry_through_outage(take_noting_failures, what=f"taking {what}")
    if taken is not None or not failed:
        return taken
    # The retry found the slot taken: perhaps by the take that failed, committed with its answer
    # lost. This worker then holds the run, and only this job can be running it (a worker runs
    # one job at a time), so it runs it; nobody else would until its lease ran out.
    execution = (
        Execution.objects.select_related("order")
        .filter(slot, status=ExecutionStatus.RUNNING, holder=worker_holder())
        .first()
    )
    if execution is None:
        return None
    logger.warning("the take of %s had committed, its answer lost: running it", what)
    return Taken(execution.pk, execution.attempts, _context(execution.order, execution))


def _finish(outcome: Outcome) -> None:
    taken = outcome.taken
    execution_finish(
        execution_id=taken.execution_id,
        attempt=taken.attempt,
        result_ref=outcome.result_ref,
        error=outcome.error,
        order_id=taken.context.order_id,
        started_at=outcome.started_at,
        retryable=outcome.retryable,
        retry_after=outcome.retry_after,
        details=outcome.details,
    )


def execute(taken: Taken) -> None:
    """Run the configured executor for a taken attempt and record its outcome."""
    outcome = _run_executor(taken)
    retry_through_outage(lambda: _finish(outcome), what=f"recording the outcome of execution {taken.execution_id}")


# --- execution batches ------------------------------------------------------------------------------
#
# When many orders fall due together (a batch of 2,000 due in the same second), paying RQ's per-job
# cost and some fifteen SQL statements per order caps a worker at about 100 executions/s. So a worker
# that has run its own occurrence also takes other due orders ("companions") in one transaction, runs
# their executors and records their outcomes in one transaction; their own jobs are dropped from
# Redis, or find their slot taken if a worker already holds them. Every per-row check of
# occurrence_take holds for a companion. A companion is taken at most ORDER_BATCH_AHEAD_SECONDS
# before its due time (orders due milliseconds apart then share a job) and its executor never
# begins before that time: the batch waits for each instant, and re-reads the order right before.


def run_occurrence_batch(first: Taken) -> int:
    """Run `first` (already taken), then due companions while the time budget lasts. Returns how many
    executors ran."""
    executor = import_string(settings.ORDER_EXECUTOR)
    if callable(getattr(executor, "run_many", None)):
        return _run_batch_together(first, executor)
    budget = float(settings.ORDER_BATCH_SECONDS)
    clock = time.monotonic()
    outcomes = [_run_executor(first)]
    companions: list[Taken] = []
    dealt_with = 0  # companions run, or found changed, so far
    changed: list[Taken] = []
    try:
        spent = time.monotonic() - clock
        room = int(settings.ORDER_BATCH_SIZE) - 1
        # The first run says how long an executor takes here: a slow executor takes no companions,
        # and a batch is sized to end within the budget if the others take as long.
        if room > 0 and spent < budget:
            room = min(room, int((budget - spent) / max(spent, 0.0005)))
        if room > 0 and spent < budget:
            companions = companions_take(exclude_order_id=first.context.order_id, limit=room)
        current: set[int] = set()
        checked_at = -math.inf
        for i, taken in enumerate(companions):
            # A companion taken ahead starts at its instant, never before; its checks follow the wait.
            _sleep_until(taken.context.scheduled_for)
            if time.monotonic() - clock > budget:
                break
            if time.monotonic() - checked_at > RECHECK_SECONDS:
                checked_at = time.monotonic()
                try:
                    current = _still_current_companions(companions[i:])
                except DatabaseError:
                    # The rest go back as pending runs below, once the database answers; the
                    # outcomes so far are recorded then too, and the job ends as a success.
                    logger.warning("could not re-read the companions' orders; handing the rest back", exc_info=True)
                    break
            if taken.execution_id not in current:
                changed.append(taken)
                dealt_with += 1
                continue
            started_at = timezone.now()
            # Noted before the executor begins: from here a lost worker costs this run an attempt
            # (an executor that kills its worker cannot loop forever uncharged).
            marked = _note_began(taken, began_at=started_at)
            dealt_with += 1
            if not marked:
                continue  # taken back meanwhile (repair's last-resort lease): no longer this worker's run
            _log_started(taken, job_id=taken.job_id, started_at=started_at)
            outcomes.append(_run_executor(taken, started_at=started_at))
    finally:
        # Whatever was not run (time spent, order changed, or an exception on the way, such as a
        # cold shutdown) goes back first, as pending runs with their own jobs: their old jobs are
        # gone, so leaving them "running" would hold them until their lease runs out.
        try:
            leftover = changed + companions[dealt_with:]
            if leftover:
                retry_through_outage(lambda: _hand_back(leftover), what=f"handing back {len(leftover)} companion(s)")
        finally:
            executions_finish(outcomes)
            if len(outcomes) > 1:
                forget_companions_began()  # their began_at is in the rows now
    return len(outcomes)


def _note_began(taken: Taken, *, began_at: datetime) -> bool:
    """Record that a companion's executor begins now, in Redis (repair reads it for a dead worker:
    jobqueue.began_noted), or in its row while Redis is unreachable. False: the row was taken back."""
    return note_companion_began(taken.execution_id, began_at) or mark_began([taken], began_at=began_at) > 0


def _run_batch_together(first: Taken, executor: Any) -> int:
    """The batch of an executor that runs many executions at once (run_many: the webhooks, sent
    concurrently). Its companions are taken at once, up to ORDER_BATCH_SIZE - 1, with no time budget:
    the executions overlap, each within its own timeout, so the batch takes about as long as its
    slowest execution, not the sum. Those already due start together with the first run; those
    taken ahead (due within ORDER_BATCH_AHEAD_SECONDS) start in groups, each group at its instant.
    Otherwise as run_occurrence_batch: the same takes and checks, and what is not run goes back as
    pending runs."""
    companions: list[Taken] = []
    outcomes: list[Outcome] = []
    try:
        room = int(settings.ORDER_BATCH_SIZE) - 1
        if room > 0:
            companions = companions_take(exclude_order_id=first.context.order_id, limit=room)
        waiting = list(companions)  # in due order (the take's ORDER BY)
        group = [first]
        while True:
            now = timezone.now()
            ready = [t for t in waiting if t.context.scheduled_for <= now]
            waiting = waiting[len(ready) :]
            runnable: list[Taken] = []
            if ready:
                try:
                    current = _still_current_companions(ready)
                except DatabaseError:
                    # What has run is recorded; the rest go back as pending runs below.
                    logger.warning("could not re-read the companions' orders; handing them back", exc_info=True)
                    current = set()
                    waiting = []
                runnable = [t for t in ready if t.execution_id in current]
            started_at = timezone.now()
            if runnable:
                mark_began(runnable, began_at=started_at)  # see run_occurrence_batch
            for taken in runnable:
                _log_started(taken, job_id=taken.job_id, started_at=started_at)
            group += runnable
            if group:
                outcomes += _run_executors_together(executor, group, started_at=started_at)
            group = []
            if not waiting:
                break
            _sleep_until(waiting[0].context.scheduled_for)
    finally:
        try:
            ran = {o.taken.execution_id for o in outcomes}
            leftover = [t for t in companions if t.execution_id not in ran]
            if leftover:
                retry_through_outage(lambda: _hand_back(leftover), what=f"handing back {len(leftover)} companion(s)")
        finally:
            executions_finish(outcomes)
    return len(outcomes)


def mark_began(takens: list[Taken], *, began_at: datetime) -> int:
    """Record in their rows that these taken companions' executors begin now (one UPDATE,
    autocommitted, milliseconds: once per batch that begins together): the attempt is charged if
    the worker is lost from here on, and their start is the attempt's, not the take's. Returns how
    many were still running to be marked."""
    return Execution.objects.filter(pk__in=[t.execution_id for t in takens], status=ExecutionStatus.RUNNING).update(
        began_at=began_at, started_at=began_at
    )


def _still_current_companions(takens: list[Taken]) -> set[int]:
    """The execution ids of those among these companions whose order still exists with the schedule version
    it had at the take (delete removes it, pause, resume and update raise the version).

    Read right before a companion's executor starts, and again once RECHECK_SECONDS have passed,
    so that DELETE, pause and update hold for a companion as they do for a job's own order, whose
    executor starts right after its take commits; one read per check, not one per companion
    (measured: a read per companion cost 0.6 ms of the 2 ms a batched execution costs)."""
    versions = dict(
        Order.objects.filter(pk__in=[t.context.order_id for t in takens]).values_list("pk", "schedule_version")
    )
    return {t.execution_id for t in takens if t.is_companion and versions.get(t.context.order_id) == t.version}


def companions_take(*, exclude_order_id: int, limit: int) -> list[Taken]:
    """Take up to `limit` other orders that are due now or within ORDER_BATCH_AHEAD_SECONDS, not
    misfired and idle (see above); the batch starts each at its instant."""
    called_at = timezone.now()
    try:
        return _companions_take(exclude_order_id=exclude_order_id, limit=limit)
    except DatabaseError as exc:
        # A deadlock or lock timeout here costs nothing: each of those orders still has its own job.
        logger.warning("could not take companion orders; each keeps its own job", exc_info=True)
        if isinstance(exc, OUTCOME_RETRY_ERRORS):
            # A lost connection may have lost the answer to a take that committed: those companions
            # are this worker's, running but never begun, and nobody would run them before their
            # lease ran out. Once the database answers, they go back as pending runs, uncharged.
            retry_through_outage(
                partial(_return_companions_taken_since, called_at), what="returning companions a lost answer took"
            )
        return []


def _return_companions_taken_since(called_at: datetime) -> int:
    """Give back the runs this worker took since `called_at` whose executors never began: only the
    take whose answer was lost can have taken any (its leases date from then; a batch's companions
    noted as begun in Redis only, which must not go back uncharged, are older)."""
    ids = list(
        Execution.objects.filter(
            holder=worker_holder(),
            status=ExecutionStatus.RUNNING,
            began_at__isnull=True,
            lease_expires_at__gte=_lease_deadline(called_at),
        ).values_list("pk", flat=True)
    )
    return executions_return(execution_ids=ids, reason="taken by a batch whose answer was lost") if ids else 0


@transaction.atomic
def _companions_take(*, exclude_order_id: int, limit: int) -> list[Taken]:
    now = timezone.now()
    # Taken a little ahead, so that a stream of orders due milliseconds apart costs one job, one
    # take and one recording between them instead of one each (issue 19: under load those per-job
    # costs were the lateness); each still starts at its instant, and is re-read right before.
    horizon = now + timedelta(seconds=settings.ORDER_BATCH_AHEAD_SECONDS)
    grace = timedelta(seconds=settings.ORDER_MISFIRE_GRACE_SECONDS)
    # SKIP LOCKED: rows another worker or a user's edit holds are simply not companions; the lock
    # never waits, so it cannot deadlock with the key-ordered locks taken everywhere else.
    orders = list(
        Order.objects.select_for_update(skip_locked=True)
        .filter(status=OrderStatus.SCHEDULED, next_run_at__lte=horizon)
        # A recurring slot past the grace may be a misfire: its own job applies the order's policy.
        # A one-time order never misfires, so a backlog of them still batches.
        .filter(Q(is_recurring=False) | Q(next_run_at__gte=now - grace))
        .exclude(pk=exclude_order_id)
        .exclude(job_id="")
        .order_by("next_run_at", "pk")[:limit]
    )
    if not orders:
        return []
    busy = set(
        Execution.objects.filter(order_id__in=[o.pk for o in orders], status=ExecutionStatus.RUNNING).values_list(
            "order_id", flat=True
        )
    )
    started: list[tuple[Order, Execution]] = []
    dropped: list[str] = []
    jobs: list[OccurrenceJob] = []
    for order in orders:
        if order.pk in busy or not order.has_runs_left:
            continue
        try:
            due = occurrence_due(order.grid, order.next_grid_index)
        except ScheduleOverflow:
            continue
        if due != order.next_run_at or due > horizon:
            continue  # not the state a scheduled slot leaves: its own job sorts it out
        dropped.append(order.job_id)
        # Taken ahead, its run counts from its instant: the order's last_run_at is never before it.
        execution = _start_occurrence(order, grid_index=order.next_grid_index, due=due, now=max(now, due), began=False)
        _advance(order, next_index=order.next_grid_index + 1, jobs=jobs)
        order.status = OrderStatus.RUNNING
        order.updated_at = now
        started.append((order, execution))
    if not started:
        return []
    executions = [execution for _, execution in started]
    Execution.objects.bulk_create(executions)
    if any(execution.pk is None for execution in executions):
        # MySQL does not return the ids of a bulk insert (MariaDB and SQLite do): read them back by
        # (order, occurrence), which is unique.
        ids = {
            (order_id, occurrence): pk
            for pk, order_id, occurrence in Execution.objects.filter(
                order_id__in=[e.order_id for e in executions], occurrence__in={e.occurrence for e in executions}
            ).values_list("pk", "order_id", "occurrence")
        }
        for execution in executions:
            execution.pk = ids[(execution.order_id, execution.occurrence)]
    sql.bulk_update(
        [order for order, _ in started],
        [
            "occurrence_seq",
            "executions_count",
            "last_run_at",
            "next_grid_index",
            "next_run_at",
            "job_id",
            "status",
            "updated_at",
        ],
    )

    place_occurrence_jobs(jobs)
    discard_jobs_after_commit(dropped)
    return [
        Taken(
            execution.pk,
            1,
            _context(order, execution),
            execution.job_id,
            is_companion=True,
            version=order.schedule_version,
        )
        for order, execution in started
    ]


def executions_finish(outcomes: list[Outcome]) -> None:
    """Record many outcomes: the successes in one transaction, each failure on its own (rare, and
    with retries to schedule)."""
    succeeded = [o for o in outcomes if not o.error]
    if len(succeeded) == 1:
        retry_through_outage(lambda: _finish(succeeded[0]), what="recording 1 outcome")
    elif succeeded:
        retry_through_outage(lambda: _finish_succeeded(succeeded), what=f"recording {len(succeeded)} outcomes")
    for outcome in outcomes:
        if outcome.error:
            retry_through_outage(partial(_finish, outcome), what="recording a failed attempt's outcome")


@transaction.atomic
def _finish_succeeded(outcomes: list[Outcome]) -> None:
    """execution_finish for many successful attempts, with the same checks, in bulk."""
    order_ids = sorted({o.taken.context.order_id for o in outcomes})
    # Orders before executions, each in key order, as everywhere else.
    orders = {o.pk: o for o in Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk")}
    execution_ids = sorted(o.taken.execution_id for o in outcomes)
    executions = {e.pk: e for e in Execution.objects.select_for_update().filter(pk__in=execution_ids).order_by("pk")}
    now = timezone.now()
    done_executions: list[Execution] = []
    touched: dict[int, Order] = {}
    for outcome in outcomes:
        taken = outcome.taken
        order = orders.get(taken.context.order_id)
        execution = executions.get(taken.execution_id)
        if order is None or execution is None or execution.order_id != order.pk:
            continue  # deleted while running: nothing to record
        if execution.status != ExecutionStatus.RUNNING or execution.attempts != taken.attempt:
            logger.warning("discarding a late outcome for execution %s attempt %s", execution.pk, taken.attempt)
            continue
        _record_attempt(
            order,
            execution,
            attempt=taken.attempt,
            now=now,
            result_ref=outcome.result_ref,
            error="",
            started_at=outcome.started_at,
            details=outcome.details,
        )
        done_executions.append(execution)
        touched[order.pk] = order
    if not done_executions:
        return
    inflight: dict[int, set[str]] = {pk: set() for pk in touched}
    others = (
        Execution.objects.filter(order_id__in=list(touched), status__in=INFLIGHT_EXECUTION_STATUSES)
        .exclude(pk__in=[e.pk for e in done_executions])
        .values_list("order_id", "status")
    )
    for order_id, status in others:
        inflight[order_id].add(status)
    sql.bulk_update(
        done_executions,
        [
            "status",
            "started_at",
            "began_at",
            "finished_at",
            "result_ref",
            "error",
            "attempt_history",
            "lease_expires_at",
        ],
    )
    notices: list[Notice] = []
    for order in touched.values():
        settle_status_and_notify(order, inflight=inflight[order.pk], notices=notices)
        count_success_and_notify(order, notices=notices)
        order.updated_at = now
        _log_if_finished(order)
    sql.bulk_update(
        list(touched.values()), ["status", "last_result", "next_run_at", "consecutive_failures", "updated_at"]
    )
    deliver(notices)


def _record_attempt(
    order: Order,
    execution: Execution,
    *,
    attempt: int,
    now: datetime,
    result_ref: str,
    error: str,
    started_at: datetime | None,
    retryable: bool = True,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
    urgent: bool = False,
) -> None:
    """The outcome of one attempt on the locked rows (the caller saves them): its history entry,
    the execution's status, the order's last result, the log lines, and a retry job for a retryable
    failure with attempts left (after `retry_after` seconds when given, else the backoff).
    `started_at` is when this attempt's executor really began (else the began_at its take or
    mark_began wrote); it is the history entry's began_at, and a first attempt's is the execution's
    started_at, the start every lateness figure reads. `details` (a webhook delivery's record) are
    kept in the history entry as "delivery" and their status code and latency logged."""
    succeeded = not error
    if started_at is not None:
        execution.began_at = started_at
    began = execution.began_at
    entry: dict[str, Any] = {
        "attempt": attempt,
        "began_at": began.isoformat() if began is not None else None,
        "finished_at": now.isoformat(),
        "status": "succeeded" if succeeded else "failed",
        "error": error[:2000],
    }
    logged: dict[str, Any] = {}
    if details is not None:
        entry["delivery"] = details
        logged = {"status_code": details.get("status_code"), "latency_ms": details.get("latency_ms")}
    execution.attempt_history = [*execution.attempt_history, entry]
    execution.lease_expires_at = None
    if began is not None and (attempt == 1 or execution.started_at is None):
        execution.started_at = began
    base = {"order_id": order.pk, "user_id": order.user_id, "occurrence": execution.occurrence, "attempt": attempt}
    if succeeded:
        execution.status = ExecutionStatus.SUCCEEDED
        execution.finished_at = now
        execution.result_ref = result_ref[:128]
        execution.error = ""
        order.last_result = ExecutionStatus.SUCCEEDED
        log_event(
            "succeeded",
            job_id=execution.job_id,
            status=ExecutionStatus.SUCCEEDED,
            result_ref=result_ref,
            **logged,
            **base,
        )
    else:
        execution.error = error[:5000]
        log_event(
            "failed",
            job_id=execution.job_id,
            status=ExecutionStatus.FAILED,
            error=error[:500],
            **logged,
            **({} if retryable else {"retryable": False}),
            **base,
        )
        if not retryable:
            # The receiver said no (or the target is refused): another attempt would say the same.
            execution.status = ExecutionStatus.FAILED
            execution.finished_at = now
            order.last_result = ExecutionStatus.FAILED
        elif attempt < settings.ORDER_MAX_ATTEMPTS and order.status != OrderStatus.PAUSED:
            execution.status = ExecutionStatus.RETRYING
            delay = retry_delay_seconds(attempt) if retry_after is None else max(0.0, retry_after)
            schedule_execution_job(execution, due=now + timedelta(seconds=delay), at_front=urgent)
            log_event(
                "retried",
                job_id=execution.job_id,
                status=ExecutionStatus.RETRYING,
                retry_in_seconds=delay,
                **{**base, "attempt": attempt + 1},
            )
        elif attempt < settings.ORDER_MAX_ATTEMPTS:
            # Paused meanwhile: resume schedules the retry.
            execution.status = ExecutionStatus.RETRYING
            execution.job_id = ""
        else:
            execution.status = ExecutionStatus.FAILED
            execution.finished_at = now
            order.last_result = ExecutionStatus.FAILED
    metrics.count_attempt(status=_counted_as(execution), first_attempt_lateness=_lateness(execution, attempt))


def _counted_as(execution: Execution) -> str:
    return "retried" if execution.status == ExecutionStatus.RETRYING else str(execution.status)


def _lateness(execution: Execution, attempt: int) -> float | None:
    """Seconds from due to the executor's start, for a first attempt (a retry's start is not late)."""
    if attempt != 1 or execution.started_at is None:
        return None
    return (execution.started_at - execution.scheduled_for).total_seconds()


def _log_if_finished(order: Order) -> None:
    if order.status in FINISHED_ORDER_STATUSES:
        log_event(
            "completed" if order.status == OrderStatus.COMPLETED else "failed",
            order_id=order.pk,
            user_id=order.user_id,
            status=order.status,
            executions_count=order.executions_count,
        )


@transaction.atomic
def _hand_back(takens: list[Taken]) -> None:
    """Companions the budget left no time for: each becomes a pending run of its own job right away
    (the occurrence stays counted and taken; execution_take starts it as attempt 1)."""
    order_ids = sorted({t.context.order_id for t in takens})
    orders = {o.pk: o for o in Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk")}
    executions = Execution.objects.select_for_update().filter(pk__in=sorted(t.execution_id for t in takens))
    for execution in executions.order_by("pk"):
        order = orders.get(execution.order_id)
        if order is None or execution.status != ExecutionStatus.RUNNING or execution.attempts != 1:
            continue
        _make_pending(execution)
    for order in orders.values():
        settle_status_and_notify(order)
        order.save(update_fields=["status", "next_run_at", "updated_at"])


def _make_pending(execution: Execution, *, urgent: bool = False) -> None:
    """A taken attempt 1 whose executor never began becomes a pending run with a job of its own
    (the occurrence stays counted and taken; execution_take starts it as attempt 1). Saves it."""
    execution.status = ExecutionStatus.PENDING
    execution.attempts = 0
    execution.started_at = None
    execution.began_at = None
    execution.holder = ""
    execution.lease_expires_at = None
    schedule_execution_job(execution, due=None, at_front=urgent)
    execution.save(
        update_fields=[
            "status",
            "attempts",
            "started_at",
            "began_at",
            "holder",
            "lease_expires_at",
            "job_id",
            "attempt_history",
        ]
    )


@transaction.atomic
def executions_return(*, execution_ids: list[int], reason: str) -> int:
    """Give back running attempts 1 whose executors never began (batch companions whose worker was
    lost), in one transaction: each pending again with a job of its own, ahead of any backlog, not
    charged an attempt; the history and the log say why. Returns how many it gave back (one that
    began, finished or changed meanwhile is left alone)."""
    order_ids = sorted(set(Execution.objects.filter(pk__in=execution_ids).values_list("order_id", flat=True)))
    # Orders before executions, each in key order, as everywhere else.
    orders = {o.pk: o for o in Order.objects.select_for_update().filter(pk__in=order_ids).order_by("pk")}
    executions = Execution.objects.select_for_update().filter(pk__in=sorted(execution_ids)).order_by("pk")
    now = timezone.now()
    returned: set[int] = set()  # their orders
    for execution in executions:
        order = orders.get(execution.order_id)
        if order is None or execution.status != ExecutionStatus.RUNNING:
            continue
        if execution.attempts != 1 or execution.began_at is not None:
            continue
        execution.attempt_history = [
            *execution.attempt_history,
            {"attempt": 1, "began_at": None, "finished_at": now.isoformat(), "status": "returned", "error": reason},
        ]
        _make_pending(execution, urgent=True)  # late already: ahead of any backlog
        returned.add(order.pk)
        log_event(
            "returned",
            order_id=order.pk,
            user_id=order.user_id,
            job_id=execution.job_id,
            occurrence=execution.occurrence,
            status=ExecutionStatus.PENDING,
            reason=reason,
        )
    for pk in sorted(returned):
        settle_status_and_notify(orders[pk])
        orders[pk].save(update_fields=["status", "next_run_at", "updated_at"])
    return len(returned)  # one running attempt per order at most: one per execution returned


class Wait(Enum):
    """What wait_until_due did with a job that may have come before its instant."""

    NONE = "due"  # due already (or not ours to wait for): take it now
    WAITED = "waited"  # waited in place until its instant; the caller forgets the wait note after the take
    HANDED_BACK = "handed back"  # due work waited behind it: given back to the queue, not taken here


def wait_until_due(order_id: int, version: int, grid_index: int) -> Wait:
    """Wait here, in the worker, for the instant of a job that came early, and return at the instant.

    Jobs come early by design (the early hand-off: the scheduler moves a job up to
    ORDER_HANDOFF_LEAD_SECONDS ahead, and writes its instant into it), so the worker has fetched the
    job before the instant and only the take is left for after it: a busy worker or a slow hop from
    the scheduler no longer makes the run late. Jobs arrive in due order, so a worker waiting here
    holds up no job due sooner, except one enqueued to run at once (a run-now, a retry): when such a
    job is seen waiting in the queue (at its head, or behind other jobs moved early: within
    jobqueue.handoff_scan_depth()) twice in a row, it is brought to the head, this one is given back
    right behind it, and the worker moves on to it. A job due further ahead than EARLY_WAIT_LIMIT_SECONDS, or one
    that came early some other way (clock skew between hosts), is not waited for: the take refuses it
    before its instant and puts it back in the schedule."""
    job_id = current_job_id()
    due = note_waiting_if_early(job_id, order_id=order_id, version=version, grid_index=grid_index) if job_id else None
    if due is None:
        return Wait.NONE
    wait = (due - timezone.now()).total_seconds()
    if wait > EARLY_WAIT_LIMIT_SECONDS:
        return Wait.WAITED  # the take postpones it; the note is forgotten after the take all the same
    seen: str | None = None
    while (left := (due - timezone.now()).total_seconds()) > HANDOFF_CHECK_SECONDS:
        due_job = due_work_waiting()
        if (
            due_job is not None
            and due_job == seen
            and hand_back_occurrence(order_id=order_id, version=version, grid_index=grid_index, due=due, behind=due_job)
        ):
            logger.info("order %s: job %s handed back behind due job %s (due %s)", order_id, job_id, due_job, due)
            return Wait.HANDED_BACK
        seen = due_job
        time.sleep(min(HANDOFF_CHECK_SECONDS, left - HANDOFF_CHECK_SECONDS))
    _sleep_until(due)
    return Wait.WAITED


def forget_wait() -> None:
    """The run is taken (or was not ours to take): this worker no longer waits for its job."""
    forget_waiting(current_job_id())
