"""Where one order execution's time goes: `python -m bench.profile_job [N]`.

Creates N one-time orders due in a second, moves them with rq-scheduler's real enqueue step and runs
them in this process with a real SimpleWorker (burst) against the benchmark's MariaDB and Redis,
with CPU time, wall time and SQL statements counted per phase and divided by the N orders (a job
that runs a batch counts once in "calls", its companions' jobs mostly never run). Same database and
Redis index as `python -m bench`; prints a table and writes var/bench/profile_job.json.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any


def main() -> None:
    from bench.environment import WORK_DIR, bench_env, setup

    env = bench_env()
    setup(env)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from rq import SimpleWorker

    from bench import data, harness
    from orders import engine, events, jobqueue, jobs

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    ctx = harness.Context(profile=harness.QUICK, env=env, work_dir=WORK_DIR)
    data.reset_orders()
    due = data.next_whole_second(timezone.now() + timedelta(seconds=1 + n * 0.01))
    harness.create_one_time_orders(ctx, [due] * n, "profile")

    capture = CaptureQueriesContext(connection)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])

    def wrap(module: Any, name: str, label: str) -> None:
        original: Callable[..., Any] = getattr(module, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            queries, cpu, wall = len(capture.captured_queries), time.process_time(), time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                entry = totals[label]
                entry[0] += time.process_time() - cpu
                entry[1] += time.perf_counter() - wall
                entry[2] += len(capture.captured_queries) - queries
                entry[3] += 1

        setattr(module, name, timed)

    wrap(jobs, "run_occurrence", "the job function (everything below)")
    wrap(engine, "wait_until_due", "wait_until_due: read the order")
    wrap(engine, "occurrence_take", "occurrence_take: the job's own order (lock, insert, update, commit)")
    wrap(engine, "companions_take", "companions_take: lock due orders, bulk insert and update, commit")
    wrap(jobqueue, "discard", "  after commit: drop the companions' jobs from Redis")
    wrap(engine, "executions_finish", "executions_finish: record the batch's outcomes, settle, commit")
    wrap(engine, "execution_finish", "  of which one outcome at a time (a batch of one, failures)")
    wrap(engine, "deliver", "  of which the completion notifications (rows, users, email)")
    wrap(events, "write_event", "order log lines (3 per execution)")

    time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.05)
    jobqueue.move_due_jobs()
    worker = SimpleWorker([jobqueue.queue()], connection=jobqueue.connection())
    with capture:
        cpu, wall = time.process_time(), time.perf_counter()
        worker.work(burst=True, logging_level="WARNING")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    settled = data.settled_count()
    result: dict[str, Any] = {
        "orders": n,
        "settled": settled,
        "cpu_ms_per_job": cpu / n * 1000,
        "wall_ms_per_job": wall / n * 1000,
        "sql_per_job": len(capture.captured_queries) / n,
        "phases": {
            label: {"cpu_ms": c / n * 1000, "wall_ms": w / n * 1000, "sql": q / n, "calls": int(k)}
            for label, (c, w, q, k) in totals.items()
        },
    }
    print(
        f"{settled}/{n} executed; per order: CPU {result['cpu_ms_per_job']:.2f} ms (RQ included), "
        f"wall {result['wall_ms_per_job']:.2f} ms, {result['sql_per_job']:.1f} SQL statements"
    )
    for label, phase in result["phases"].items():
        print(
            f"  {label:70} CPU {phase['cpu_ms']:5.2f} ms  wall {phase['wall_ms']:5.2f} ms  "
            f"SQL {phase['sql']:4.1f}  calls {phase['calls']}"
        )
    (WORK_DIR / "profile_job.json").write_text(json.dumps(result, indent=1))
    data.reset_orders()


if __name__ == "__main__":
    main()
