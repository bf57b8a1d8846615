"""Drive the real rq-scheduler enqueue step and a real RQ worker in burst mode, in this process."""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings
from rq import SimpleWorker

from orders import jobqueue


def enqueue_due() -> int:
    """One pass of rq-scheduler: move every due job into the queue."""
    return jobqueue.move_due_jobs()


def work() -> None:
    """Run a real RQ worker in burst mode until the queue is empty."""
    worker = SimpleWorker([jobqueue.queue()], connection=jobqueue.connection())
    worker.work(burst=True, logging_level="WARNING")


def tick() -> None:
    enqueue_due()
    work()


def run_until(predicate: Any, timeout: float = 20.0, step: float = 0.1) -> None:
    """Poll scheduler + worker (as the real processes would) until predicate() holds."""
    deadline = time.monotonic() + timeout
    while True:
        tick()
        if predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(step)


def log_lines() -> list[dict[str, Any]]:
    text = settings.ORDER_LOG_FILE.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]
