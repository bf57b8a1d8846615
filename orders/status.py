"""An order's status, derived from its executions and its schedule; finishing notifies the owner."""

from __future__ import annotations

from orders.models import (
    INFLIGHT_EXECUTION_STATUSES,
    ExecutionStatus,
    Order,
    OrderStatus,
)
from orders.notifications import Notice, notify_order_finished


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
