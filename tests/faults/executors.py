"""Executors for tests and fault drills (ORDER_EXECUTOR="tests.faults.executors.<name>").

The processes the fault suite and the end-to-end tests start run with the repository root as their
working directory, so `tests` is importable there as it is here.

`record` leaves evidence of every call in LOG_DIR/effects.log.

Each call appends a "begin" line before its (configurable) sleep and an "end" line after it, so a
test can tell deliveries (begins), completed effects (ends) and calls cut short by a crash (a begin
without an end) apart, and can check that two calls for one order never overlapped.
Order names containing "poison" raise, like fail_when_named_poison.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from django.conf import settings

from orders.executors import ExecutionContext, simulate_placement


def effects_path() -> Path:
    return Path(settings.LOG_DIR) / "effects.log"


def _append(record: dict[str, object]) -> None:
    line = (json.dumps(record) + "\n").encode()
    # One O_APPEND write per line: concurrent workers never interleave (see orders/events.py).
    fd = os.open(effects_path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def record(context: ExecutionContext) -> str:
    base = {
        "key": context.idempotency_key,
        "order_id": context.order_id,
        "occurrence": context.occurrence,
        "attempt": context.attempt,
        "pid": os.getpid(),
    }
    _append({**base, "phase": "begin", "t": time.time()})
    time.sleep(float(os.environ.get("FAULT_EXECUTOR_SECONDS", "0")))
    if "poison" in context.order_name.lower():
        _append({**base, "phase": "raise", "t": time.time()})
        raise RuntimeError("poison order")
    _append({**base, "phase": "end", "t": time.time()})
    return simulate_placement(context)


def always_fail(context: ExecutionContext) -> str:
    raise RuntimeError(f"simulated failure of order {context.order_id}")


def fail_first_attempt(context: ExecutionContext) -> str:
    if context.attempt == 1:
        raise RuntimeError("simulated transient failure")
    return simulate_placement(context)


def slow(context: ExecutionContext) -> str:
    """Sleeps ORDER_SLOW_EXECUTOR_SECONDS (default 3) so that faults can land mid-run."""
    time.sleep(float(os.environ.get("ORDER_SLOW_EXECUTOR_SECONDS", "3")))
    return simulate_placement(context)


def fail_when_named_poison(context: ExecutionContext) -> str:
    if "poison" in context.order_name.lower():
        raise RuntimeError("poison order")
    return simulate_placement(context)
