"""The order log under concurrent writers and rotation."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

from django.conf import settings

from orders.events import write_event

WRITERS = 4
LINES_EACH = 1500


def _writer(index: int, log_file: str, ready: Any) -> None:
    settings.ORDER_LOG_FILE = Path(log_file)
    ready.wait()
    for n in range(LINES_EACH):
        # A long, multi-line, non-ASCII name: the worst case for interleaving and line splitting.
        write_event("started", order_id=index, occurrence=n, order_name="line\nbreak \u00e9\u6f22\U0001f600 " * 20)


def test_concurrent_writers_and_rotation_lose_and_interleave_nothing(tmp_path: Path) -> None:
    log_file = tmp_path / "orders.log"
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    procs = [ctx.Process(target=_writer, args=(i, str(log_file), ready)) for i in range(WRITERS)]
    for p in procs:
        p.start()
    ready.set()
    rotated = []
    # Rotate (rename) the file several times while the writers are busy, as logrotate does.
    for i in range(5):
        while not log_file.exists():
            pass
        target = tmp_path / f"orders.log.{i}"
        os.rename(log_file, target)
        rotated.append(target)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines: list[str] = []
    for path in [*rotated, log_file]:
        if path.exists():
            lines.extend(path.read_text(encoding="utf-8").splitlines())
    records = [json.loads(line) for line in lines]  # every line is one whole JSON object
    assert len(records) == WRITERS * LINES_EACH
    seen = {(r["order_id"], r["occurrence"]) for r in records}
    assert seen == {(i, n) for i in range(WRITERS) for n in range(LINES_EACH)}
    assert all(r["order_name"].startswith("line\nbreak") for r in records)
