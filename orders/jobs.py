"""RQ job functions. Each takes ids, re-reads the database and calls the engine services."""

from __future__ import annotations

from django.db import close_old_connections

from common import tracing
from orders import engine, metrics
from orders.models import Execution, Order


def run_occurrence(order_id: int, version: int, grid_index: int) -> str:
    try:
        # Part of the trace of the request that created or last changed the order (common/tracing.py).
        with tracing.span(
            "run_occurrence",
            traceparent=lambda: Order.objects.filter(pk=order_id).values_list("trace_context", flat=True).first() or "",
            attributes={"order.id": order_id, "order.grid_index": grid_index},
        ):
            return _run_occurrence(order_id, version, grid_index)
    finally:
        # A forking worker's work horse ends with os._exit: write its counts before it does.
        metrics.flush_if_forked()


def _run_occurrence(order_id: int, version: int, grid_index: int) -> str:
    # A worker is a long-lived process with no request cycle, so nothing else drops a connection
    # the database broke (restart, failover, network cut): without this every later job fails with
    # "server has gone away" until the worker is restarted (fault scenario 7).
    close_old_connections()
    try:
        waited = engine.wait_until_due(order_id, version, grid_index)
        if waited is engine.Wait.HANDED_BACK:
            return "handed back: a due job was waiting behind it"
        taken = engine.occurrence_take_through_outage(order_id=order_id, version=version, grid_index=grid_index)
    finally:
        # Taken (a lost worker is then noticed by its run's holder), given back, stale or failed:
        # this worker no longer waits for the job. Idempotent, so also after a wait never noted.
        engine.forget_wait()
    if taken is None:
        return "skipped: stale, early, overlapping or not runnable"
    ran = engine.run_occurrence_batch(taken)
    return f"ran execution {taken.execution_id}" + (f" and {ran - 1} due companion(s)" if ran > 1 else "")


def run_execution(execution_id: int, attempt: int) -> str:
    try:
        with tracing.span(
            "run_execution",
            traceparent=lambda: (
                Execution.objects.filter(pk=execution_id).values_list("order__trace_context", flat=True).first() or ""
            ),
            attributes={"execution.id": execution_id, "execution.attempt": attempt},
        ):
            return _run_execution(execution_id, attempt)
    finally:
        metrics.flush_if_forked()  # see run_occurrence


def _run_execution(execution_id: int, attempt: int) -> str:
    close_old_connections()  # see run_occurrence
    taken = engine.execution_take_through_outage(execution_id=execution_id, attempt=attempt)
    if taken is None:
        return "skipped: stale or not runnable"
    engine.execute(taken)
    return f"ran execution {taken.execution_id} attempt {attempt}"
