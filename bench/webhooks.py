"""Scenario "webhooks", beside the no-op batch: n webhook orders due in the same second, 2 SimpleWorkers,
against a local receiver (tests/webhooks/receiver.py, its own process) that answers each request after
100 ms. Measures when the deliveries are done after their due time, and checks with the receiver that
each webhook-id succeeded exactly once."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from bench.stack import ROOT

RECEIVER_DELAY_S = 0.1
WORKERS = 2


class _Receiver:
    def __init__(self, work_dir: Path, delay: float) -> None:
        self.port_file = work_dir / f"webhook-receiver-{time.monotonic_ns()}.port"
        command = [sys.executable, "-m", "tests.webhooks.receiver", "--port-file", str(self.port_file)]
        self.process = subprocess.Popen([*command, "--delay", str(delay)], cwd=ROOT)
        deadline = time.monotonic() + 15
        while not self.port_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("the webhook receiver did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{int(self.port_file.read_text())}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/_stats", timeout=10) as response:  # noqa: S310 - the loopback
            result: dict[str, Any] = json.loads(response.read())
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _one_batch(ctx: Any, receiver: _Receiver, n: int, rep: int) -> dict[str, Any]:
    from bench import data
    from orders import services
    from webhooks.services import signing_secret_rotate

    for _attempt in range(3):
        data.reset_orders()
        lead = 2.0 + n * ctx.create_cost_s * 1.5
        due = data.next_whole_second(timezone.now() + timedelta(seconds=lead))
        per_user = max(1, settings.ORDER_MAX_ACTIVE_PER_USER // 2)
        if len(ctx.users) < math.ceil(n / per_user):
            ctx.users = data.bench_users(math.ceil(n / per_user))
        for user in ctx.users:
            # The users outlive a run, their secrets' encryption key (this run's SECRET_KEY) does not.
            signing_secret_rotate(user_id=user.pk)
        began = time.monotonic()
        made = 0
        try:
            for i in range(n):
                services.order_create(
                    user=ctx.users[i // per_user],
                    definition=services.OrderDefinition(
                        order_name=f"webhook {rep}-{i}",
                        schedule_time=due,
                        target_url=f"{receiver.url}/ok?rep={rep}",
                        payload={"rep": rep, "i": i},
                    ),
                )
                made += 1
        except ValidationError:
            pass  # the due time passed while creating (a busy machine): retried with a longer lead
        ctx.create_cost_s = max(0.002, (time.monotonic() - began) / max(1, made))
        if made == n and timezone.now() < due - timedelta(seconds=0.3):
            break
        ctx.log(f"  creating {n} webhook orders overran the due time; retrying with a longer lead")
    else:
        raise RuntimeError("could not create the webhook batch before its due time")
    data.wait_for(lambda: data.settled_count() >= n, 60 + (due - timezone.now()).total_seconds())
    rows = data.execution_rows()
    result = data.summary(
        due.timestamp(),
        [data.ts(r["started_at"]) for r in rows],
        [data.ts(r["finished_at"]) for r in rows if r["status"] == "succeeded"],
        n,
    )
    from orders.models import Execution

    ids = {f"order-{o}-occurrence-{k}" for o, k in Execution.objects.values_list("order_id", "occurrence")}
    stats = receiver.stats()
    attempts = {i: a for i, a in stats["attempts"].items() if i in ids}
    result.update(
        rep=rep,
        failed=sum(1 for r in rows if r["status"] == "failed"),
        executions=len(rows),
        ids_succeeded=sum(1 for i in ids if stats["succeeded"].get(i, 0) >= 1),
        ids_succeeded_more_than_once=sum(1 for i in ids if stats["succeeded"].get(i, 0) > 1),
        requests=sum(len(a) for a in attempts.values()),
        receiver_delay_s=RECEIVER_DELAY_S,
    )
    return result


def scenario_webhooks(ctx: Any) -> dict[str, Any]:
    n = ctx.profile.webhook_orders
    receiver = _Receiver(ctx.work_dir, RECEIVER_DELAY_S)
    stack = ctx.stack()
    runs: list[dict[str, Any]] = []
    try:
        stack.start_scheduler()
        stack.start_workers(WORKERS, "rq.worker.SimpleWorker")
        for rep in range(ctx.profile.repeats):
            cpu = stack.cpu_seconds("worker")
            result = _one_batch(ctx, receiver, n, rep + 1)
            result["worker_cpu_ms_per_delivery"] = (stack.cpu_seconds("worker") - cpu) * 1000 / max(1, n)
            runs.append(result)
            all_done, twice = result.get("all_done_s", math.nan), result["ids_succeeded_more_than_once"]
            ctx.log(
                f"webhooks x{WORKERS} n={n} rep {rep + 1}: all done {all_done:.2f}s after due,"
                f" {result['ids_succeeded']}/{n} ids succeeded ({twice} more than once),"
                f" worker CPU {result['worker_cpu_ms_per_delivery']:.1f} ms/delivery"
            )
    finally:
        stack.stop_all()
        receiver.stop()
    from bench import data

    data.reset_orders()
    return {"orders": n, "workers": WORKERS, "receiver_delay_s": RECEIVER_DELAY_S, "runs": runs}
