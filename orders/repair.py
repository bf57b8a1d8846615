"""Repair: make Redis match the database, the source of truth.

reconcile (run by the scheduler at start and every RECONCILE_EVERY_SECONDS, and by `manage.py
reconcile_orders`) places a job for every active order and waiting execution that has none, drops
jobs whose order is gone, and records runs abandoned by a worker that died. The replayed requests of
orders/services/idempotency.py run the same repairs for one order at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.utils import timezone

from orders import jobqueue, metrics, sql
from orders.dispatch import (
    OccurrenceJob,
    occurrence_job_for,
    place_occurrence_jobs,
    redis_safely,
    schedule_execution_job,
)
from orders.engine import execution_finish, executions_return
from orders.models import (
    ACTIVE_ORDER_STATUSES,
    WAITING_EXECUTION_STATUSES,
    Execution,
    ExecutionStatus,
    Order,
    OrderStatus,
)
from orders.recurrence import ScheduleOverflow, occurrence_due

# A holder whose key is missing is looked up once more this long after, before its runs are taken
# back: a live worker rewrites its key every WORKER_BEAT_SECONDS, so only a dead one is missing
# twice. (A Redis that lost its data loses live workers' keys too: jobqueue.living_holders tells
# nothing until they have had the time to come back.)
HOLDER_RECHECK_SECONDS = jobqueue.WORKER_BEAT_SECONDS + 0.1
LOST_BEFORE_BEGIN = "returned: worker lost before this run began"
WORKER_LOST = "WorkerLost: the worker running this attempt stopped before finishing"


def _gone(holders: set[str]) -> set[str]:
    """The holders whose heartbeat is gone; none while Redis cannot tell (it just lost its data)."""
    if not holders:
        return set()
    alive = jobqueue.living_holders(holders)
    return set() if alive is None else holders - alive


def recover_abandoned(now: datetime | None = None, *, limit: int = 5000) -> int:
    """Take back the running attempts of workers that died: those whose holder's heartbeat is gone
    (orders/jobqueue.py, worker liveness), or, as a last resort, whose lease has passed.

    An attempt whose executor began (its row's began_at, or a batch companion's note in Redis:
    jobqueue.began_noted) counts as a failed attempt, retried at once, its job ahead of any backlog
    in the queue; a batch companion taken but never begun goes back to pending uncharged
    (engine.executions_return). Cheap enough to run every second: one indexed query of the running
    attempts and one round trip to Redis for their holders."""
    now = now or timezone.now()
    running = list(
        Execution.objects.filter(status=ExecutionStatus.RUNNING).values_list(
            "id", "attempts", "holder", "began_at", "lease_expires_at"
        )[:limit]
    )
    try:
        waiting = jobqueue.waiting_jobs()
    except Exception:  # noqa: BLE001 - Redis down: nothing to tell about waits; the runs still count
        waiting = {}
    if not running and not waiting:
        return 0
    holders = {holder for _, _, holder, _, _ in running if holder}
    holders.update(wait.holder for wait in waiting.values())
    gone = _gone(holders)
    if gone:
        time.sleep(HOLDER_RECHECK_SECONDS)
        gone &= _gone(gone)
    replaced = _replace_lost_waits(waiting, gone)
    abandoned = [
        (execution_id, attempts, holder, began_at)
        for execution_id, attempts, holder, began_at, lease in running
        if holder in gone or (lease is not None and lease < now)
    ]
    if not abandoned:
        metrics.count_recovered(replaced)
        return replaced
    noted = jobqueue.began_noted(holder for _, _, holder, began_at in abandoned if began_at is None)
    unbegun = {pk for pk, attempts, _, began_at in abandoned if began_at is None and attempts == 1 and pk not in noted}
    recovered = executions_return(execution_ids=sorted(unbegun), reason=LOST_BEFORE_BEGIN) if unbegun else 0
    for execution_id, attempts, _, _ in abandoned:
        if execution_id in unbegun:
            continue
        began = datetime.fromtimestamp(noted[execution_id], UTC) if execution_id in noted else None
        # A lost worker says nothing about the order: its retry runs at once, not after the backoff.
        execution_finish(
            execution_id=execution_id,
            attempt=attempts,
            error=WORKER_LOST,
            started_at=began,
            retry_after=0.0,
            urgent=True,
        )
        recovered += 1
    for holder in gone:
        redis_safely(jobqueue.forget_began, holder)
    metrics.count_recovered(recovered + replaced)
    return recovered + replaced


def _replace_lost_waits(waiting: dict[str, jobqueue.WaitNote], gone: set[str]) -> int:
    """Give a new job to each order whose early job a dead worker was waiting for (the early
    hand-off, engine.wait_until_due): that job is "started" in rq and would never run. An order that
    moved on meanwhile (another version or grid slot) is left alone. Returns how many got one."""
    lost = {job_id: wait for job_id, wait in waiting.items() if wait.holder in gone}
    if not lost:
        return 0
    slots = {(w.order_id, w.version, w.grid_index) for w in lost.values()}
    placed = reschedule_orders(sorted({w.order_id for w in lost.values()}), slots=slots)
    redis_safely(jobqueue.forget_waiting_jobs, lost)
    return len(placed)


@dataclass
class ReconcileReport:
    scheduled: int = 0
    requeued_executions: int = 0
    removed_orphans: int = 0
    recovered_abandoned: int = 0
    checked: int = 0

    def __str__(self) -> str:
        return (
            f"checked {self.checked} active orders: scheduled {self.scheduled} missing jobs, "
            f"re-queued {self.requeued_executions} pending executions, removed {self.removed_orphans} orphan jobs, "
            f"recovered {self.recovered_abandoned} abandoned runs"
        )


def reconcile(*, batch_size: int = 2000) -> ReconcileReport:
    """Make Redis match the database (the source of truth)."""
    report = ReconcileReport()
    redis_safely(jobqueue.clean_started_registry)
    report.recovered_abandoned = recover_abandoned()
    wanted: set[str] = set()

    active = Order.objects.filter(status__in=ACTIVE_ORDER_STATUSES).order_by("pk")
    last_pk = 0
    while True:
        batch = list(active.filter(pk__gt=last_pk).values_list("pk", "job_id", "next_run_at")[:batch_size])
        if not batch:
            break
        last_pk = batch[-1][0]
        report.checked += len(batch)
        job_ids = [job_id for _, job_id, _ in batch if job_id]
        wanted.update(job_ids)
        live = jobqueue.live_job_ids(job_ids)
        missing = [pk for pk, job_id, next_run_at in batch if next_run_at is not None and job_id not in live]
        if missing:
            placed = reschedule_orders(missing)
            report.scheduled += len(placed)
            wanted.update(placed)
    pending = Execution.objects.filter(
        status__in=WAITING_EXECUTION_STATUSES,
        order__status__in=ACTIVE_ORDER_STATUSES,
    ).values_list("pk", "job_id")
    pending_list = list(pending)
    wanted.update(job_id for _, job_id in pending_list if job_id)
    live_exec = jobqueue.live_job_ids([job_id for _, job_id in pending_list])
    for pk, job_id in pending_list:
        if job_id not in live_exec:
            report.requeued_executions += requeue_execution(pk)
    candidates = sorted(jobqueue.all_order_job_ids() - wanted)
    for i in range(0, len(candidates), batch_size):
        # One lookup per chunk, not per job: after a rebuild every job placed above is a candidate
        # (job_id has no index, so a per-job query scanned the whole table each time).
        chunk = candidates[i : i + batch_size]
        known = set(Order.objects.filter(job_id__in=chunk).values_list("job_id", flat=True))
        known.update(Execution.objects.filter(job_id__in=chunk).values_list("job_id", flat=True))
        for job_id in chunk:
            if job_id not in known:
                # A job whose order is gone or inactive (it would do nothing anyway): drop it.
                jobqueue.cancel(job_id)
                report.removed_orphans += 1
    metrics.count_repairs(
        scheduled=report.scheduled, requeued=report.requeued_executions, orphans=report.removed_orphans
    )
    return report


@transaction.atomic
def reschedule_orders(order_ids: list[int], *, slots: set[tuple[int, int, int]] | None = None) -> list[str]:
    """Give each of these active orders that has no live job a new one for its pending occurrence,
    in one transaction and one Redis pipeline (after commit). Returns the new job ids. The repair of
    reconcile, also run at once for an order whose create is replayed (services.idempotency.order_create_once).

    The rows are locked in primary-key order, like everywhere else, and re-checked under the lock: an
    order that was changed or got a live job meanwhile is left alone. `slots`: (order id, version,
    grid index) whose job a dead worker popped (Redis still shows it started, yet it will never run):
    an order still at one of these gets a new job whatever its job looks like; any other is left alone.
    """
    orders = list(
        Order.objects.select_for_update()
        .filter(pk__in=order_ids, status__in=ACTIVE_ORDER_STATUSES)
        .exclude(next_run_at=None)
        .order_by("pk")
    )
    live = jobqueue.live_job_ids([o.job_id for o in orders])
    changed: list[Order] = []
    jobs: list[OccurrenceJob] = []
    for order in orders:
        if slots is not None:
            if (order.pk, order.schedule_version, order.next_grid_index) not in slots:
                continue
        elif order.job_id in live:
            continue
        try:
            due = occurrence_due(order.grid, order.next_grid_index)
        except ScheduleOverflow:
            continue
        order.next_run_at = due
        jobs.append(occurrence_job_for(order, due=due))
        changed.append(order)
    sql.bulk_update(changed, ["job_id", "next_run_at"])
    # A slot a dead worker popped is late already: its job goes ahead of any backlog.
    place_occurrence_jobs(jobs, at_front=slots is not None)
    return [job.job_id for job in jobs]


@transaction.atomic
def requeue_execution(execution_id: int) -> int:
    """Give a waiting run (pending, or retrying) of an unpaused order a job if it has no live one;
    returns 1 if it did. The repair of reconcile, also run at once for a replayed run-now or retry."""
    order_id = Execution.objects.filter(pk=execution_id).values_list("order_id", flat=True).first()
    if order_id is None:
        return 0
    order = Order.objects.select_for_update().filter(pk=order_id).first()
    execution = Execution.objects.select_for_update().filter(pk=execution_id).first()
    if order is None or execution is None or order.status == OrderStatus.PAUSED:
        return 0
    if execution.status not in WAITING_EXECUTION_STATUSES:
        return 0
    if execution.job_id and jobqueue.live_job_ids([execution.job_id]):
        return 0
    schedule_execution_job(execution, due=None)
    execution.save(update_fields=["job_id"])
    return 1
