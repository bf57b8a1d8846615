"""A fault-drill executor that leaves evidence of every call in LOG_DIR/effects.log.

Each call appends a "begin" line before its (configurable) sleep and an "end" line after it, so a
test can tell deliveries (begins), completed effects (ends) and calls cut short by a crash (a begin
without an end) apart, and can check that two calls for one order never overlapped.
Order names containing "poison" raise, like orders.executors.fail_when_named_poison.
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
