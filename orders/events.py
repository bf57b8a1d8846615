"""The order log: one JSON object per line in LOG_DIR/orders.log for every order event.

Each line is written with a single O_APPEND write() of a file opened for that line alone, so:
- several workers writing at once never interleave or lose lines (the kernel positions each append
  atomically, and a line is far below the size at which a write could be split);
- the file can be rotated by renaming it at any moment: a writer opens the path afresh for every
  line, so nothing is written to a renamed file after the rename, and nothing is lost.
Events are logged after the database commit that made them true, so the log agrees with the records.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import transaction

# Every event name the log carries (docs and log readers rely on this list): log_event refuses others.
EVENTS = frozenset(
    {
        "created",
        "create_replayed",
        "updated",
        "converted",
        "paused",
        "resumed",
        "deleted",
        "started",
        "succeeded",
        "failed",
        "retried",
        "retry_replayed",
        # A batch companion whose worker was lost before its executor began: pending again, uncharged.
        "returned",
        "skipped",
        "completed",
        "run_now",
        "run_now_replayed",
        "test_delivery",
    }
)


_UNICODE_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_event(event: str, **fields: Any) -> None:
    record: dict[str, Any] = {"ts": _timestamp(), "event": event}
    for key in ("order_id", "user_id", "job_id", "occurrence", "attempt", "status"):
        record[key] = fields.pop(key, None)
    record.update(fields)
    # json.dumps escapes newlines inside strings, so a name with a newline stays on one line; it leaves
    # NEL, LINE SEPARATOR and PARAGRAPH SEPARATOR raw, which str.splitlines() and some viewers break on.
    text = json.dumps(record, ensure_ascii=False, default=str).translate(_UNICODE_LINE_BREAKS)
    line = (text + "\n").encode("utf-8")
    fd = os.open(settings.ORDER_LOG_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def log_event(event: str, **fields: Any) -> None:
    """Log after the current transaction commits (at once when there is none)."""
    if event not in EVENTS:
        raise ValueError(f"unknown order event {event!r}: add it to orders.events.EVENTS")
    transaction.on_commit(lambda: write_event(event, **fields))
