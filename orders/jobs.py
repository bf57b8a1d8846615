"""RQ job functions. Each takes ids, re-reads the database and calls the engine services."""

from __future__ import annotations

from orders import engine


def run_occurrence(order_id: int, version: int, grid_index: int) -> str:
    engine.wait_until_due(order_id, version, grid_index)
    taken = engine.occurrence_take(order_id=order_id, version=version, grid_index=grid_index)
    if taken is None:
        return "skipped: stale, early, overlapping or not runnable"
    engine.execute(taken)
    return f"ran execution {taken.execution_id}"


def run_execution(execution_id: int, attempt: int) -> str:
    taken = engine.execution_take(execution_id=execution_id, attempt=attempt)
    if taken is None:
        return "skipped: stale or not runnable"
    engine.execute(taken)
    return f"ran execution {taken.execution_id} attempt {attempt}"
