"""What metrics cost, counted in CPU instructions instead of seconds.

Throughput on a shared 2-core machine moves by 10-20 % from one run to the next, which hides a 5 %
cost. valgrind's callgrind counts the instructions a process executes: for the same program and
inputs that count repeats whatever else the machine is doing. Each figure here is a process run
twice under callgrind, with a small and a large number of operations; the difference divided by
the difference in operations is the cost of one operation, with the process's start-up and
warm-up cancelled out. Done with METRICS_ENABLED on and off, the two per-operation costs give the
metrics' share.

The operations, each in the process that does them in production:
- `create` / `list`: `POST /api/orders` and `GET /api/orders?page=1` (50 orders) through the whole
  Django stack (middleware, authentication, the view, the database and Redis calls) in one process,
  with Django's test client in place of the socket;
- `job`: an RQ worker (`manage.py rqworker --burst`, SimpleWorker) running one-time orders that fell
  due together, prepared outside the counted process.

What this leaves out, and why that is fair to the comparison: the MariaDB and Redis servers'
own work (metrics add none on these paths: counts go to an in-process buffer) and the flusher
thread's one pipeline per second, which under valgrind (about 50 times slower) is spread over fewer
operations than in production, so its share here is, if anything, an overestimate.

`python -m bench.instructions probe create|list N` is the counted process (run by `measure`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.stack import ROOT, procfile_commands

PROBE_USER = "instructions@bench.invalid"
LIST_ORDERS = 50
_COLLECTED = re.compile(r"Collected : (\d+)")


def available() -> bool:
    return shutil.which("valgrind") is not None


def _callgrind(argv: list[str], env: dict[str, str], out_dir: Path) -> int:
    """Instructions executed by argv (with all its threads) under callgrind."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out_dir / 'callgrind.out.%p'}",
        *argv,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    match = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind run failed ({done.returncode}): {done.stderr[-2000:]}")
    for path in out_dir.glob("callgrind.out.*"):
        path.unlink()  # only the total is used; the profiles are large
    return int(match.group(1))


def _prepare_jobs(n: int) -> None:
    """n one-time orders due together, moved into the queue (not counted: another process)."""
    from bench.data import bench_users, next_whole_second, reset_orders
    from orders import jobqueue, services

    reset_orders()
    (user,) = bench_users(1)
    due = next_whole_second(timezone_now() + timedelta(seconds=1))
    for i in range(n):
        services.order_create(
            user=user, definition=services.OrderDefinition(order_name=f"instructions {i}", schedule_time=due)
        )
    while timezone_now() < due:
        time.sleep(0.05)
    moved = jobqueue.move_due_jobs()
    if moved == 0:
        raise RuntimeError("no job fell due")


def timezone_now() -> Any:
    from django.utils import timezone

    return timezone.now()


def _settled(n: int) -> None:
    from orders.models import Execution

    settled = Execution.objects.filter(status="succeeded").count()
    if settled != n:
        raise RuntimeError(f"the counted worker ran {settled} of {n} orders")


def measure(env: dict[str, str], work_dir: Path, *, small: int, large: int) -> dict[str, Any]:
    """Instructions per operation with metrics on and off; see the module's docstring."""
    # The Procfile's worker (SimpleWorker on the orders queue), leaving when the queue is empty.
    worker = [*procfile_commands(env)["worker"], "--burst"]
    figures: dict[str, Any] = {"small": small, "large": large, "per_operation": {}}
    for kind in ("create", "list", "job"):
        for mode in ("on", "off"):
            side_env = {
                **env,
                "METRICS_ENABLED": "true" if mode == "on" else "false",
                # The same hash seed in every run, so that both sides execute the same dict layouts.
                "PYTHONHASHSEED": "0",
                # The flusher writes once per second of wall time. Under callgrind a second holds about
                # 1/50 of the work it holds in production, so a 1 s flush would be charged to 50 times
                # fewer operations than it serves; 60 s keeps it out of the counted difference.
                "METRICS_FLUSH_SECONDS": "60",
            }
            counts = {}
            for n in (small, large):
                if kind == "job":
                    _prepare_jobs(n)
                    counts[n] = _callgrind(worker, side_env, work_dir / "callgrind")
                    _settled(n)
                else:
                    argv = [sys.executable, "-m", "bench.instructions", "probe", kind, str(n)]
                    counts[n] = _callgrind(argv, side_env, work_dir / "callgrind")
            per_op = (counts[large] - counts[small]) / (large - small)
            figures["per_operation"].setdefault(kind, {})[mode] = per_op
    for sides in figures["per_operation"].values():
        sides["cost_percent"] = (sides["on"] / sides["off"] - 1) * 100
    return figures


# --- the counted process ------------------------------------------------------------------------------


def _probe(kind: str, n: int) -> None:
    import django

    django.setup()
    from django.test import Client

    from bench.data import bench_users, reset_orders, seed_orders, token_for

    reset_orders()
    (user,) = bench_users(1)
    client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token_for(user)}")
    if kind == "list":
        seed_orders(user, LIST_ORDERS)

    def once(i: int) -> None:
        if kind == "create":
            due = (timezone_now() + timedelta(hours=1)).isoformat()
            response = client.post(
                "/api/orders", {"order_name": f"probe {i}", "schedule_time": due}, content_type="application/json"
            )
            expected = 201
        else:
            response = client.get("/api/orders?page=1")
            expected = 200
        if response.status_code != expected:
            raise RuntimeError(f"{kind} answered {response.status_code}: {response.content[:500]!r}")

    for i in range(3):  # warm-up: imports, caches and connections, in both the small and large runs
        once(-1 - i)
    for i in range(n):
        once(i)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "probe":
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_site.settings")
        _probe(sys.argv[2], int(sys.argv[3]))
    else:
        sys.exit("usage: python -m bench.instructions probe create|list N")
