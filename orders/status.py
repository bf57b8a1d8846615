"""An order's status, derived from its executions and its schedule; finishing notifies the owner.
Also the order's failure policy: a streak of failed executions pauses it (pause_after_failures)."""

from __future__ import annotations

from orders.dispatch import cancel_job_after_commit
from orders.events import log_event
from orders.models import (
    ACTIVE_ORDER_STATUSES,
    INFLIGHT_EXECUTION_STATUSES,
    Execution,
    ExecutionStatus,
    Order,
    OrderStatus,
)
from orders.notifications import Notice, notify_order_auto_paused, notify_order_finished, notify_order_recovered

# The order's fields pause_and_cancel_job and count_outcome_and_notify change (the caller saves them).
POLICY_FIELDS = ("status", "schedule_version", "job_id", "consecutive_failures")


def settle_status_and_notify(
    order: Order, *, inflight: set[str] | None = None, notices: list[Notice] | None = None
) -> None:
    """Derive the order's status from its executions and schedule (the caller holds the lock and
    saves), and notify the owner (in-app and by email, after commit) when it has just finished.

    A caller settling many orders at once passes each order's in-flight execution statuses (read in
    one query) and a `notices` list that it delivers in bulk."""
    if order.status == OrderStatus.PAUSED:
        return
    if inflight is None:
        inflight = set(order.executions.filter(status__in=INFLIGHT_EXECUTION_STATUSES).values_list("status", flat=True))
    previous = order.status
    if ExecutionStatus.RUNNING in inflight:
        order.status = OrderStatus.RUNNING
    elif inflight or (order.next_run_at is not None and order.job_id):
        order.status = OrderStatus.SCHEDULED
    else:
        order.status = OrderStatus.FAILED if order.last_result == ExecutionStatus.FAILED else OrderStatus.COMPLETED
        order.next_run_at = None
        if previous != order.status:
            notify_order_finished(order, notices=notices)


def pause_and_cancel_job(order: Order) -> None:
    """Pause the (locked, active) order: its pending job is dropped after commit and any job already
    handed out finds a newer schedule version. The caller saves POLICY_FIELDS and logs."""
    order.schedule_version += 1
    cancel_job_after_commit(order.job_id)
    order.job_id = ""
    order.status = OrderStatus.PAUSED


def count_success_and_notify(order: Order, *, notices: list[Notice] | None = None) -> None:
    """An execution of the order succeeded: a streak of failures ends, and the owner hears of it."""
    if order.consecutive_failures:
        notify_order_recovered(order, failures=order.consecutive_failures, notices=notices)
        order.consecutive_failures = 0


def count_outcome_and_notify(order: Order, execution: Execution, *, notices: list[Notice] | None = None) -> bool:
    """Keep the order's streak of executions that failed for good after `execution` has finished
    (or not: a retrying one counts nothing yet), once the order's status is settled. At
    pause_after_failures in a row an order that still has runs ahead is paused, and the owner told
    why, with the last error; a success after a streak notifies its end. Returns whether the order
    was paused (its pause notice then stands for the failed run's own)."""
    if execution.status == ExecutionStatus.SUCCEEDED:
        count_success_and_notify(order, notices=notices)
        return False
    if execution.status != ExecutionStatus.FAILED:
        return False
    order.consecutive_failures += 1
    limit = order.pause_after_failures
    # A finished order (its last run failed) has nothing left to pause; a paused one is paused.
    if limit is None or order.consecutive_failures < limit or order.status not in ACTIVE_ORDER_STATUSES:
        return False
    pause_and_cancel_job(order)
    notify_order_auto_paused(order, failures=order.consecutive_failures, error=execution.error, notices=notices)
    log_event(
        "paused",
        order_id=order.pk,
        user_id=order.user_id,
        status=order.status,
        reason="failures",
        consecutive_failures=order.consecutive_failures,
    )
    return True
