"""Where a webhook delivery's worker CPU goes: `python -m bench.profile_webhooks [N] [--cprofile]`.

Starts the bench's local receiver (100 ms per answer), creates N webhook orders due in a second,
moves their jobs with rq-scheduler's real enqueue step and runs them in this process with a real
SimpleWorker (burst) against the benchmark's MariaDB and Redis. Prints the worker's CPU per delivery
and the SQL statements per delivery, and with --cprofile the functions that cost the most (tottime
and cumtime), written to var/bench/profile_webhooks.prof too. Same database and Redis index as
`python -m bench`.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from datetime import timedelta
from typing import Any


def main(argv: list[str]) -> None:
    from bench.environment import WORK_DIR, bench_env, setup

    env = bench_env()
    setup(env)
    from django.conf import settings
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from rq import SimpleWorker

    from bench import data, harness
    from bench.webhooks import RECEIVER_DELAY_S, _Receiver
    from orders import jobqueue, services
    from webhooks.services import signing_secret_rotate

    args = [a for a in argv if not a.startswith("--")]
    n = int(args[0]) if args else 500
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    receiver = _Receiver(WORK_DIR, RECEIVER_DELAY_S)
    try:
        ctx = harness.Context(profile=harness.QUICK, env=env, work_dir=WORK_DIR)
        data.reset_orders()
        per_user = max(1, settings.ORDER_MAX_ACTIVE_PER_USER // 2)
        ctx.users = data.bench_users(-(-n // per_user))
        for user in ctx.users:
            signing_secret_rotate(user_id=user.pk)
        due = data.next_whole_second(timezone.now() + timedelta(seconds=1 + n * 0.01))
        for i in range(n):
            services.order_create(
                user=ctx.users[i // per_user],
                definition=services.OrderDefinition(
                    order_name=f"profile webhook {i}",
                    schedule_time=due,
                    target_url=f"{receiver.url}/ok?profile=1",
                    payload={"i": i},
                ),
            )
        time.sleep(max(0.0, (due - timezone.now()).total_seconds()) + 0.05)
        jobqueue.move_due_jobs()
        worker = SimpleWorker([jobqueue.queue()], connection=jobqueue.connection())
        profiler = cProfile.Profile() if "--cprofile" in argv else None
        capture = CaptureQueriesContext(connection)
        with capture:
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            worker.work(burst=True, logging_level="WARNING")
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        settled = data.settled_count()
        stats: dict[str, Any] = receiver.stats()
        print(
            f"{settled}/{n} settled, {sum(1 for v in stats['succeeded'].values() if v)} ids succeeded;"
            f" per delivery: CPU {cpu / n * 1000:.2f} ms, wall {wall / n * 1000:.2f} ms,"
            f" {len(capture.captured_queries) / n:.1f} SQL statements"
        )
        if profiler:
            path = WORK_DIR / "profile_webhooks.prof"
            profiler.dump_stats(str(path))
            for key in ("tottime", "cumulative"):
                pstats.Stats(profiler).sort_stats(key).print_stats(35)
        data.reset_orders()
    finally:
        receiver.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
