"""The benchmark scenarios. Each starts the real processes it needs, drives them, reads the outcome
from the database (Execution rows) or from Redis, and returns plain data for the results file.

This module runs inside a Django-configured process pointed at the benchmark's own database and
Redis index (see bench/__main__.py); it deletes every order row and clears the queue keys of that
index between runs.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from bench import instructions
from bench.calendar import scenario_calendar
from bench.data import (
    bench_users,
    clear_queue_state,
    execution_rows,
    next_whole_second,
    reset_orders,
    seed_orders,
    settled_count,
    summary,
    token_for,
    ts,
    wait_for,
)
from bench.stack import ROOT, BenchStack, process_tree_cpu_seconds
from bench.stats import percentile, slope
from bench.webhooks import scenario_webhooks

SIMPLE = "rq.worker.SimpleWorker"
FORK = "rq.worker.Worker"
NOOP_FUNC = "bench.noop.noop"
WRK_LUA_DIR = Path(__file__).resolve().parent / "lua"


@dataclass
class Profile:
    name: str
    repeats: int
    api_seconds: float
    api_connections: list[int]
    # (worker class, worker processes, repetitions, orders in the batch)
    batch_configs: list[tuple[str, int, int, int]]
    precision_orders: int
    precision_span_seconds: int
    drift_occurrences: int
    scale_orders: int
    scale_heavy_user_orders: int
    list_seed_orders: int = 200
    api_users: int = 200
    poll_samples: int = 200
    # The precision scenario under load: simulated API users and how long they work.
    load_users: int = 40
    load_seconds: float = 60
    # The metrics scenario: on/off pairs, and the batch it runs in each.
    metrics_repeats: int = 3
    metrics_batch_orders: int = 2000
    # Operations counted under callgrind (bench/instructions.py): the small and the large run; None: skipped.
    metrics_instructions: tuple[int, int] | None = (10, 40)
    # Cron orders reconciled by the calendar scenario (bench/calendar.py), and orders timed for the
    # cost of their next occurrence.
    calendar_orders: int = 100_000
    calendar_cost_samples: int = 5000
    # Webhook orders due in the same second (bench/webhooks.py).
    webhook_orders: int = 2000


FULL = Profile(
    name="full",
    repeats=3,
    api_seconds=8,
    api_connections=[1, 16, 64],
    # The fork Worker is 5-8 times slower per job and not the configured class: fewer, smaller runs
    # keep a full run within an hour on the shared 2-core machine.
    batch_configs=[(SIMPLE, 1, 1, 2000), (SIMPLE, 2, 3, 2000), (SIMPLE, 4, 1, 2000)]
    + [(FORK, n, 1, 500) for n in (1, 2, 4)],
    precision_orders=300,
    precision_span_seconds=60,
    drift_occurrences=120,
    scale_orders=100_000,
    scale_heavy_user_orders=10_000,
)
QUICK = Profile(
    name="quick",
    repeats=1,
    api_seconds=1,
    api_connections=[1, 16, 64],
    batch_configs=[(SIMPLE, 1, 1, 100), (SIMPLE, 2, 1, 100), (FORK, 2, 1, 40)],
    precision_orders=20,
    precision_span_seconds=4,
    drift_occurrences=4,
    scale_orders=600,
    scale_heavy_user_orders=300,
    api_users=40,
    poll_samples=50,
    load_seconds=15,
    metrics_repeats=1,
    metrics_batch_orders=200,
    metrics_instructions=(3, 9),
    calendar_orders=2000,
    calendar_cost_samples=500,
    webhook_orders=200,
)
# The smoke test: the same code paths with the smallest counts that still mean something.
SMOKE = Profile(
    name="smoke",
    repeats=1,
    api_seconds=1,
    api_connections=[2],
    batch_configs=[(SIMPLE, 1, 1, 6)],
    precision_orders=3,
    precision_span_seconds=2,
    drift_occurrences=3,
    scale_orders=40,
    scale_heavy_user_orders=20,
    list_seed_orders=10,
    api_users=3,
    poll_samples=5,
    load_users=3,
    load_seconds=3,
    metrics_repeats=1,
    metrics_batch_orders=6,
    # Counting instructions takes minutes under valgrind; the report's handling of it is tested apart.
    metrics_instructions=None,
    calendar_orders=40,
    calendar_cost_samples=20,
    webhook_orders=6,
)
PROFILES = {p.name: p for p in (FULL, QUICK, SMOKE)}


@dataclass
class Context:
    profile: Profile
    env: dict[str, str]
    work_dir: Path
    log: Callable[[str], None] = print
    # Seconds of creating one order through the service; refined after each batch.
    create_cost_s: float = 0.008
    users: list[Any] = field(default_factory=list)

    def stack(self) -> BenchStack:
        return BenchStack(env=self.env, work_dir=self.work_dir)


def create_one_time_orders(ctx: Context, dues: list[datetime], name: str) -> None:
    """Create orders through the service, the path the API takes (row, job, log line)."""
    from orders import services

    per_user = max(1, settings.ORDER_MAX_ACTIVE_PER_USER // 2)
    needed = math.ceil(len(dues) / per_user)
    if len(ctx.users) < needed:
        ctx.users = bench_users(needed)
    for i, due in enumerate(dues):
        services.order_create(
            user=ctx.users[i // per_user],
            definition=services.OrderDefinition(order_name=f"{name} {i}", schedule_time=due),
        )


# --- scenario 1: API -----------------------------------------------------------------------------------


def _wrk(ctx: Context, base_url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    threads = max(1, min(2, connections))
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        base_url,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH_JSON "))
    data: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    duration = data["duration_us"] / 1e6
    return {
        "connections": connections,
        "requests": data["requests"],
        "rps": data["requests"] / duration if duration else math.nan,
        "p50_ms": data["p50_us"] / 1000,
        "p90_ms": data["p90_us"] / 1000,
        "p99_ms": data["p99_us"] / 1000,
        "max_ms": data["max_us"] / 1000,
        "non_2xx": data["non2xx"],
        "socket_errors": data["connect_errors"] + data["read_errors"] + data["write_errors"] + data["timeouts"],
    }


def _lua(ctx: Context, name: str, replacements: dict[str, str], out_name: str | None = None) -> Path:
    """bench/lua/<name>.lua with its --MARKERS-- replaced, followed by the shared report.lua."""
    text = (WRK_LUA_DIR / f"{name}.lua").read_text()
    for marker, value in replacements.items():
        text = text.replace(f"--{marker}--", value)
    script = ctx.work_dir / f"{out_name or name}.lua"
    script.write_text(text + "\n" + (WRK_LUA_DIR / "report.lua").read_text())
    return script


def token_script(
    ctx: Context, name: str, tokens: list[str], path: str = "/api/orders", out_name: str | None = None
) -> Path:
    return _lua(ctx, name, {"TOKENS": ",\n".join(f'  "{t}"' for t in tokens), "PATH": path}, out_name)


def scenario_api(ctx: Context) -> dict[str, Any]:
    reset_orders()
    users = bench_users(ctx.profile.api_users)
    tokens = [token_for(u) for u in users]
    list_user = bench_users(ctx.profile.api_users + 1)[-1]
    seed_orders(list_user, ctx.profile.list_seed_orders)
    create_script = token_script(ctx, "create_order", tokens)
    list_script = token_script(ctx, "list_orders", [token_for(list_user)], path="/api/orders?page=1")
    stack = ctx.stack()
    runs: list[dict[str, Any]] = []
    memory: dict[str, float] = {}
    try:
        stack.start_web()
        memory["web_at_rest_mib"] = stack.rss_mib("web")
        # Warm-up: the first requests of each process import the URL conf and open connections.
        for script in (create_script, list_script):
            _wrk(ctx, stack.base_url, script, 4, 1)
        for rep in range(ctx.profile.repeats):
            for conns in ctx.profile.api_connections:
                # Same table size for every create run: the previous run's orders are removed.
                from orders.models import Order

                Order.objects.exclude(user=list_user).delete()
                clear_queue_state()
                for endpoint, script in (("create", create_script), ("list", list_script)):
                    cpu = stack.cpu_seconds("web")
                    result = _wrk(ctx, stack.base_url, script, conns, ctx.profile.api_seconds)
                    # CPU per request is far less sensitive than requests/s to the other load on the machine.
                    result["web_cpu_ms_per_request"] = (
                        (stack.cpu_seconds("web") - cpu) * 1000 / max(1, result["requests"])
                    )
                    result.update(endpoint=endpoint, rep=rep + 1)
                    runs.append(result)
                    ctx.log(
                        f"api {endpoint:6} c={conns:<3} rep {rep + 1}: {result['rps']:.0f} req/s "
                        f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms non-2xx {result['non_2xx']}"
                    )
        memory["web_after_load_mib"] = stack.rss_mib("web")
        web_command = stack.web_command()
    finally:
        stack.stop_all()
    floor = _api_floor(ctx, list_user.pk, users[0].pk)
    return {
        "runs": runs,
        "floor": floor,
        "memory": memory,
        "web_command": web_command,
        "list_page_orders": 50,
    }


def _api_floor(ctx: Context, list_user_id: int, create_user_id: int) -> list[dict[str, Any]]:
    """The same web server command serving bench/floor.py: Django plus only the statements each endpoint
    cannot avoid, at 16 connections, measured right after the product in the same run."""
    scripts = {}
    for endpoint, method, path in (
        ("hello", "GET", "/floor/hello"),
        ("list", "GET", f"/floor/list?user={list_user_id}"),
        ("create", "POST", f"/floor/create?user={create_user_id}"),
    ):
        scripts[endpoint] = _lua(ctx, "floor", {"METHOD": method, "PATH": path}, out_name=f"floor-{endpoint}")
    stack = ctx.stack()
    runs: list[dict[str, Any]] = []
    try:
        stack.start_web(app="bench.floor:application", settings_module="bench.floor_settings")
        for script in scripts.values():
            _wrk(ctx, stack.base_url, script, 4, 1)
        for rep in range(ctx.profile.repeats):
            for endpoint, script in scripts.items():
                cpu = stack.cpu_seconds("web")
                result = _wrk(ctx, stack.base_url, script, 16, ctx.profile.api_seconds)
                result["web_cpu_ms_per_request"] = (stack.cpu_seconds("web") - cpu) * 1000 / max(1, result["requests"])
                result.update(endpoint=endpoint, rep=rep + 1)
                runs.append(result)
                ctx.log(
                    f"api floor {endpoint:6} c=16 rep {rep + 1}: {result['rps']:.0f} req/s "
                    f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms non-2xx {result['non_2xx']}"
                )
    finally:
        stack.stop_all()
    from orders.models import Order

    Order.objects.filter(order_name="floor").delete()
    return runs


# --- scenario 2: batch and the ceiling -------------------------------------------------------------------


def _job_span(job_ids: list[str]) -> tuple[list[float], list[float]]:
    from rq.job import Job

    from orders import jobqueue

    starts, ends = [], []
    for i in range(0, len(job_ids), 1000):
        for job in Job.fetch_many(job_ids[i : i + 1000], connection=jobqueue.connection()):
            if job is not None:
                starts.append(ts(job.started_at))
                ends.append(ts(job.ended_at))
    return starts, ends


def _ceiling_queue(n: int, timeout: float) -> dict[str, Any]:
    """n no-op jobs pushed straight into the queue: the workers' own ceiling."""
    from rq import Queue

    from orders import jobqueue

    queue = jobqueue.queue()
    ids = [f"bench-noop-{i}-{time.time_ns()}" for i in range(n)]
    data = [Queue.prepare_data(NOOP_FUNC, job_id=job_id, result_ttl=900) for job_id in ids]
    queue.enqueue_many(data)
    wait_for(lambda: queue.finished_job_registry.count >= n, timeout)
    starts, ends = _job_span(ids)
    return summary(None, starts, ends, n)


def _ceiling_scheduled(ctx: Context, n: int, timeout: float) -> dict[str, Any]:
    """n no-op jobs due in the same second through rq-scheduler: the ceiling of scheduler + workers."""
    from orders import jobqueue

    sched = jobqueue.scheduler()
    due = next_whole_second(datetime.now(UTC) + timedelta(seconds=1 + n * 0.0015))
    ids = [f"bench-noop-s{i}-{time.time_ns()}" for i in range(n)]
    for job_id in ids:
        sched.enqueue_at(due, NOOP_FUNC, job_id=job_id, job_result_ttl=900, queue_name=settings.ORDER_QUEUE)
    queue = jobqueue.queue()
    before = queue.finished_job_registry.count
    wait_for(lambda: queue.finished_job_registry.count >= before + n, timeout + (due - datetime.now(UTC)).seconds)
    starts, ends = _job_span(ids)
    return summary(due.timestamp(), starts, ends, n)


def _product_batch(ctx: Context, n: int, timeout: float) -> dict[str, Any]:
    """n one-time orders through the service, all due on the same whole second."""
    for _attempt in range(3):
        reset_orders()
        lead = 2.0 + n * ctx.create_cost_s * 1.5
        due = next_whole_second(timezone.now() + timedelta(seconds=lead))
        began = time.monotonic()
        create_one_time_orders(ctx, [due] * n, "batch")
        ctx.create_cost_s = max(0.002, (time.monotonic() - began) / n)
        if timezone.now() < due - timedelta(seconds=0.3):
            break
        ctx.log(f"  creating {n} orders overran the due time; retrying with a longer lead")
    else:
        raise RuntimeError("could not create the batch before its due time")
    wait_for(lambda: settled_count() >= n, timeout + (due - timezone.now()).total_seconds())
    rows = execution_rows()
    result = summary(
        due.timestamp(),
        [ts(r["started_at"]) for r in rows],
        [ts(r["finished_at"]) for r in rows if r["status"] == "succeeded"],
        n,
    )
    result["failed"] = sum(1 for r in rows if r["status"] == "failed")
    result["executions"] = len(rows)
    result["create_ms_per_order"] = ctx.create_cost_s * 1000
    return result


def scenario_batch(ctx: Context) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    stack = ctx.stack()
    try:
        reset_orders()
        stack.start_scheduler()
        memory.append({"process": "scheduler", "state": "at rest", "rss_mib": stack.rss_mib("scheduler")})
        for worker_class, workers, repeats, n in ctx.profile.batch_configs:
            timeout = max(60.0, n / 5)
            stack.start_workers(workers, worker_class)
            label = f"{worker_class.rsplit('.', 1)[1]} x{workers}"
            memory.append({"process": f"workers ({label})", "state": "at rest", "rss_mib": stack.rss_mib("worker")})
            for rep in range(repeats):
                for kind, run in (
                    ("ceiling", lambda n=n, timeout=timeout: _ceiling_queue(n, timeout)),
                    ("ceiling_scheduled", lambda n=n, timeout=timeout: _ceiling_scheduled(ctx, n, timeout)),
                    ("product", lambda n=n, timeout=timeout: _product_batch(ctx, n, timeout)),
                ):
                    clear_queue_state()
                    cpu_workers, cpu_scheduler = stack.cpu_seconds("worker"), stack.cpu_seconds("scheduler")
                    result = run()
                    done = max(1, result.get("done", 0))
                    result["worker_cpu_ms_per_job"] = (stack.cpu_seconds("worker") - cpu_workers) * 1000 / done
                    result["scheduler_cpu_ms_per_job"] = (stack.cpu_seconds("scheduler") - cpu_scheduler) * 1000 / done
                    result.update(kind=kind, worker_class=worker_class, workers=workers, rep=rep + 1)
                    runs.append(result)
                    ctx.log(
                        f"batch {label} {kind:17} n={n} rep {rep + 1}: {result.get('throughput_per_s', math.nan):.0f}/s"
                        f" all done {result.get('all_done_s', math.nan):.2f}s after due,"
                        f" worker CPU {result['worker_cpu_ms_per_job']:.1f} ms/job"
                    )
            memory.append({"process": f"workers ({label})", "state": "after batch", "rss_mib": stack.rss_mib("worker")})
            stack.stop_prefix("worker")
        memory.append({"process": "scheduler", "state": "after batch", "rss_mib": stack.rss_mib("scheduler")})
    finally:
        stack.stop_all()
    return {"orders": max(c[3] for c in ctx.profile.batch_configs), "runs": runs, "memory": memory}


# --- scenarios 3 and 4: precision and drift ------------------------------------------------------------


def scenario_precision(ctx: Context, workers: int = 2) -> dict[str, Any]:
    n, span = ctx.profile.precision_orders, ctx.profile.precision_span_seconds
    stack = ctx.stack()
    runs = []
    try:
        reset_orders()
        stack.start_scheduler()
        stack.start_workers(workers, SIMPLE)
        for rep in range(ctx.profile.repeats):
            reset_orders()
            start = next_whole_second(timezone.now() + timedelta(seconds=2 + n * ctx.create_cost_s * 1.5))
            # Due times to the microsecond, spread over the span (a whole second is no special case).
            rng = random.Random(rep)
            dues = [start + timedelta(seconds=i % span, microseconds=rng.randrange(1_000_000)) for i in range(n)]
            create_one_time_orders(ctx, dues, "precision")
            if timezone.now() >= start:
                ctx.log("  precision: creation overran the first due time")
            wait_for(lambda: settled_count() >= n, span + 60)
            rows = execution_rows()
            lateness = [ts(r["started_at"]) - ts(r["scheduled_for"]) for r in rows]
            result: dict[str, Any] = {
                "rep": rep + 1,
                "n": n,
                "executed": len(rows),
                "lateness_s": lateness,
                "p50_s": percentile(lateness, 50),
                "p99_s": percentile(lateness, 99),
                "max_s": max(lateness) if lateness else math.nan,
                "early_starts": sum(1 for v in lateness if v < 0),
            }
            runs.append(result)
            ctx.log(
                f"precision rep {rep + 1}: p50 {result['p50_s'] * 1000:.0f} ms p99 {result['p99_s'] * 1000:.0f} ms "
                f"max {result['max_s'] * 1000:.0f} ms early {result['early_starts']}"
            )
    finally:
        stack.stop_all()
    return {"workers": workers, "worker_class": SIMPLE, "span_s": span, "runs": runs}


class _LoadUser(threading.Thread):
    """One simulated API user: creates one-time orders due a few seconds ahead (to the microsecond),
    lists its orders, renames one, pauses and resumes another, and runs it now, at about the pace
    of a person clicking quickly. Every request goes to the real web server over loopback."""

    PACE_SECONDS = 0.25

    def __init__(self, base_url: str, token: str, stop_at: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.host, self.port = base_url.removeprefix("http://").split(":")
        self.token, self.stop_at, self.rng = token, stop_at, random.Random(seed)
        self.created: list[int] = []  # the orders whose lateness is measured
        self.requests = 0
        self.errors: list[str] = []

    def _call(self, conn: Any, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.requests += 1
        if resp.status >= 400:
            self.errors.append(f"{method} {path}: {resp.status} {data[:200]!r}")
            return None
        return json.loads(data) if data else None

    def run(self) -> None:
        import http.client

        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=10)
        far = (datetime.now(UTC) + timedelta(days=1)).isoformat()
        churn = self._call(
            conn,
            "POST",
            "/api/orders/",
            {
                "order_name": "churn",
                "schedule_time": far,
                "is_recurring": True,
                "repeat_interval": 1,
                "repeat_unit": "hours",
            },
        )
        while time.time() < self.stop_at:
            due = datetime.now(UTC) + timedelta(seconds=self.rng.uniform(1.5, 4.0))
            made = self._call(conn, "POST", "/api/orders/", {"order_name": "precise", "schedule_time": due.isoformat()})
            if made:
                self.created.append(made["order_id"])
            self._call(conn, "GET", "/api/orders/?page=1")
            roll = self.rng.random()
            if roll < 0.3 and self.created:
                self._call(conn, "PATCH", f"/api/orders/{self.created[-1]}", {"order_name": "precise (renamed)"})
            elif roll < 0.5 and churn:
                self._call(conn, "POST", f"/api/orders/{churn['order_id']}/pause")
                self._call(conn, "POST", f"/api/orders/{churn['order_id']}/resume")
            elif roll < 0.6 and churn:
                self._call(conn, "POST", f"/api/orders/{churn['order_id']}/run-now")
            time.sleep(self.PACE_SECONDS * self.rng.uniform(0.5, 1.5))
        conn.close()


def scenario_precision_load(ctx: Context, workers: int = 2) -> dict[str, Any]:
    """Due times to the microsecond while load_users simulated users work through the API (create,
    list, update, pause, resume, run-now). Lateness = started_at - scheduled_for of the one-time
    orders the users created; the idle figure is scenario precision's."""
    from orders.models import Execution, ExecutionKind

    stack = ctx.stack()
    runs = []
    try:
        reset_orders()
        users = bench_users(ctx.profile.load_users)
        tokens = [token_for(u) for u in users]
        stack.start_web()
        stack.start_scheduler()
        stack.start_workers(workers, SIMPLE)
        for rep in range(ctx.profile.repeats):
            reset_orders()
            stop_at = time.time() + ctx.profile.load_seconds
            began = time.monotonic()
            clients = [_LoadUser(stack.base_url, t, stop_at, seed=rep * 1000 + i) for i, t in enumerate(tokens)]
            for c in clients:
                c.start()
            for c in clients:
                c.join(ctx.profile.load_seconds + 60)
            elapsed = time.monotonic() - began
            created = [oid for c in clients for oid in c.created]

            def all_ran(ids: list[int] = created) -> bool:
                return Execution.objects.filter(order_id__in=ids, status="succeeded").count() >= len(ids)

            wait_for(all_ran, 30)
            rows = list(
                Execution.objects.filter(order_id__in=created, kind=ExecutionKind.SCHEDULED).values(
                    "scheduled_for", "started_at"
                )
            )
            lateness = [ts(r["started_at"]) - ts(r["scheduled_for"]) for r in rows]
            requests = sum(c.requests for c in clients)
            errors = [e for c in clients for e in c.errors]
            result: dict[str, Any] = {
                "rep": rep + 1,
                "users": len(clients),
                "requests": requests,
                "requests_per_s": requests / elapsed if elapsed else math.nan,
                "errors": len(errors),
                "error_samples": errors[:5],
                "orders": len(created),
                "executed": len(rows),
                "p50_s": percentile(lateness, 50),
                "p99_s": percentile(lateness, 99),
                "max_s": max(lateness) if lateness else math.nan,
                "early_starts": sum(1 for v in lateness if v < 0),
            }
            runs.append(result)
            ctx.log(
                f"precision under load rep {rep + 1}: {requests} requests ({result['requests_per_s']:.0f}/s, "
                f"{len(errors)} errors), {len(rows)}/{len(created)} orders: p50 {result['p50_s'] * 1000:.0f} ms "
                f"p99 {result['p99_s'] * 1000:.0f} ms max {result['max_s'] * 1000:.0f} ms "
                f"early {result['early_starts']}"
            )
    finally:
        stack.stop_all()
    return {"workers": workers, "worker_class": SIMPLE, "runs": runs}


def scenario_drift(ctx: Context, workers: int = 2) -> dict[str, Any]:
    from orders import services
    from orders.models import Order

    count = ctx.profile.drift_occurrences
    stack = ctx.stack()
    try:
        reset_orders()
        stack.start_scheduler()
        stack.start_workers(workers, SIMPLE)
        user = bench_users(1)[0]
        anchor = next_whole_second(timezone.now() + timedelta(seconds=1.5))
        order = services.order_create(
            user=user,
            definition=services.OrderDefinition(
                order_name="drift",
                schedule_time=anchor,
                is_recurring=True,
                repeat_interval=1,
                repeat_unit="seconds",
                max_executions=count,
            ),
        )
        wait_for(lambda: Order.objects.get(pk=order.pk).status in ("completed", "failed"), count + 60, step=0.5)
        rows = sorted(execution_rows(), key=lambda r: r["grid_index"])
    finally:
        stack.stop_all()
    ks = [r["grid_index"] for r in rows]
    lateness = [ts(r["started_at"]) - ts(r["scheduled_for"]) for r in rows]
    half = len(lateness) // 2
    result: dict[str, Any] = {
        "occurrences": count,
        "executed": len(rows),
        "k": ks,
        "lateness_s": lateness,
        "max_abs_s": max(abs(v) for v in lateness) if lateness else math.nan,
        "slope_ms_per_occurrence": slope(ks, lateness) * 1000 if len(ks) > 1 else math.nan,
        "first_half_p50_s": percentile(lateness[:half], 50) if half else math.nan,
        "second_half_p50_s": percentile(lateness[half:], 50) if half else math.nan,
        "early_starts": sum(1 for v in lateness if v < 0),
    }
    ctx.log(
        f"drift: {len(rows)}/{count} executed, max |lateness| {result['max_abs_s'] * 1000:.0f} ms, "
        f"slope {result['slope_ms_per_occurrence']:.2f} ms/occurrence"
    )
    return result


# --- scenario 5: scale ---------------------------------------------------------------------------------


def _poll_cost(samples: int) -> dict[str, float]:
    """One scheduler pass as `manage.py rqscheduler` makes it, nothing due: one script renewing the
    lease, checking the sentinel, writing the heartbeat and running the due-jobs query."""
    from orders import jobqueue

    owner = f"bench-{time.time_ns()}"
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        jobqueue.poll_schedule(owner=owner, lease_ms=1500)
        times.append(time.perf_counter() - began)
    jobqueue.release_scheduler_lease(owner)
    return {"p50_ms": percentile(times, 50) * 1000, "p99_ms": percentile(times, 99) * 1000}


def scenario_scale(ctx: Context) -> dict[str, Any]:
    from orders import jobqueue

    total, heavy = ctx.profile.scale_orders, ctx.profile.scale_heavy_user_orders
    conn = jobqueue.connection()
    reset_orders()
    result: dict[str, Any] = {"orders": total, "heavy_user_orders": heavy}
    result["poll_empty"] = _poll_cost(ctx.profile.poll_samples)
    per_user = settings.ORDER_MAX_ACTIVE_PER_USER
    users = bench_users(math.ceil(total / per_user) + 1)
    heavy_user = users[-1]
    began = time.monotonic()
    # The heavy user holds the cap in active orders and the rest as finished ones.
    heavy_active = min(per_user, heavy, total)
    seed_orders(heavy_user, heavy_active)
    seed_orders(heavy_user, heavy - heavy_active, status="completed", start=timezone.now() - timedelta(days=30))
    remaining, i = total - heavy_active, 0
    while remaining > 0:
        chunk = min(per_user, remaining)
        seed_orders(users[i], chunk, start=timezone.now() + timedelta(days=1, seconds=i * per_user))
        remaining -= chunk
        i += 1
    result["seed_seconds"] = time.monotonic() - began
    clear_queue_state()
    memory_before = int(conn.info("memory")["used_memory"])
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "manage.py", "reconcile_orders"],
        cwd=ROOT,
        env=ctx.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result["reconcile_seconds"] = time.monotonic() - began
    result["reconcile_output"] = out.stdout.strip()
    scheduled = jobqueue.scheduled_count()
    result["scheduled_jobs"] = scheduled
    memory_after = int(conn.info("memory")["used_memory"])
    result["redis_bytes_per_order"] = (memory_after - memory_before) / scheduled if scheduled else math.nan
    result["redis_used_mib"] = memory_after / 2**20
    ctx.log(
        f"scale: reconcile of {total} orders {result['reconcile_seconds']:.1f}s, "
        f"{result['redis_bytes_per_order']:.0f} B/order in Redis"
    )
    result["poll_full"] = _poll_cost(ctx.profile.poll_samples)
    stack = ctx.stack()
    try:
        stack.start_scheduler(reconcile=False)
        pid = stack.pids("scheduler")[0]
        argv = stack.commands()["scheduler"]
        interval = float(argv[argv.index("--interval") + 1])
        time.sleep(1)
        cpu0, t0 = process_tree_cpu_seconds(pid), time.monotonic()
        time.sleep(max(3.0, ctx.profile.api_seconds))
        cpu1, t1 = process_tree_cpu_seconds(pid), time.monotonic()
        polls = (t1 - t0) / interval
        result["scheduler_process"] = {
            "interval_s": interval,
            "cpu_ms_per_poll": (cpu1 - cpu0) * 1000 / polls,
            "cpu_share": (cpu1 - cpu0) / (t1 - t0),
            "rss_mib": stack.rss_mib("scheduler"),
        }
        stack.stop("scheduler")
        stack.start_web()
        list_script = token_script(ctx, "list_orders", [token_for(heavy_user)], path="/api/orders?page=1")
        result["list_heavy_user"] = [
            _wrk(ctx, stack.base_url, list_script, conns, ctx.profile.api_seconds) for conns in (1, 16)
        ]
        last = max(1, heavy // 50)
        deep = token_script(ctx, "list_orders", [token_for(heavy_user)], path=f"/api/orders?page={last}")
        last_page = _wrk(ctx, stack.base_url, deep, 1, ctx.profile.api_seconds)
        last_page["page"] = last
        result["list_heavy_user_last_page"] = last_page
    finally:
        stack.stop_all()
    ctx.log(
        f"scale: poll p50 {result['poll_full']['p50_ms']:.2f} ms (empty {result['poll_empty']['p50_ms']:.2f} ms); "
        f"list p50 {result['list_heavy_user'][0]['p50_ms']:.1f} ms"
    )
    reset_orders()
    return result


# --- the run ---------------------------------------------------------------------------------------------

# --- scenario 6: the cost of the metrics -------------------------------------------------------------

METRICS_CONNECTIONS = 16
METRICS_TOKEN = "bench-metrics-token-not-secret"


def _metrics_stack(ctx: Context, mode: str) -> BenchStack:
    env = {**ctx.env, "METRICS_ENABLED": "true" if mode == "on" else "false", "METRICS_TOKEN": METRICS_TOKEN}
    return BenchStack(env=env, work_dir=ctx.work_dir)


def _scrape_ms(base_url: str, samples: int = 5) -> float:
    """The median time of a GET /metrics (what a Prometheus scrape costs the site)."""
    import urllib.request

    times = []
    for _ in range(samples):
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        request = urllib.request.Request(f"{base_url}/metrics", headers=headers)  # noqa: S310 - http on loopback
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http on loopback
            response.read()
        times.append((time.perf_counter() - began) * 1000)
    return sorted(times)[len(times) // 2]


def scenario_metrics(ctx: Context) -> dict[str, Any]:
    """The API (create and list at 16 connections) and a batch of one-time orders due together on 2
    SimpleWorkers, with METRICS_ENABLED on and off. The two sides alternate within the run (on, off,
    then off, on, ...), each on freshly started processes, so the machine's drift hits both alike;
    the report compares medians."""
    from orders.models import Order

    reset_orders()
    users = bench_users(ctx.profile.api_users)
    tokens = [token_for(u) for u in users]
    list_user = bench_users(ctx.profile.api_users + 1)[-1]
    seed_orders(list_user, ctx.profile.list_seed_orders)
    create_script = token_script(ctx, "create_order", tokens)
    list_script = token_script(ctx, "list_orders", [token_for(list_user)], path="/api/orders?page=1")
    n = ctx.profile.metrics_batch_orders
    runs: list[dict[str, Any]] = []
    scrape: list[float] = []
    # How long creating an order takes now, so that a batch is created before its due time.
    calibration = min(n, 100)
    began = time.monotonic()
    create_one_time_orders(ctx, [timezone.now() + timedelta(hours=1)] * calibration, "calibration")
    # Three times the measured cost: on a loaded machine a batch that overruns its due time is retried
    # while its first attempt's orders start running.
    ctx.create_cost_s = max(ctx.create_cost_s, 3 * (time.monotonic() - began) / calibration)
    reset_orders()
    for rep in range(ctx.profile.metrics_repeats):
        modes = ("on", "off") if rep % 2 == 0 else ("off", "on")
        for mode in modes:
            stack = _metrics_stack(ctx, mode)
            try:
                stack.start_web()
                for script in (create_script, list_script):
                    _wrk(ctx, stack.base_url, script, 4, 1)  # warm-up
                for endpoint, script in (("create", create_script), ("list", list_script)):
                    Order.objects.exclude(user=list_user).delete()
                    clear_queue_state()
                    cpu = stack.cpu_seconds("web")
                    result = _wrk(ctx, stack.base_url, script, METRICS_CONNECTIONS, ctx.profile.api_seconds)
                    result["web_cpu_ms_per_request"] = (
                        (stack.cpu_seconds("web") - cpu) * 1000 / max(1, result["requests"])
                    )
                    result.update(part="api", endpoint=endpoint, mode=mode, rep=rep + 1)
                    runs.append(result)
                    ctx.log(f"metrics {mode:3} api {endpoint:6} rep {rep + 1}: {result['rps']:.0f} req/s")
                if mode == "on":
                    scrape.append(_scrape_ms(stack.base_url))
            finally:
                stack.stop_all()
        for mode in modes:
            stack = _metrics_stack(ctx, mode)
            try:
                reset_orders()
                stack.start_scheduler()
                stack.start_workers(2, SIMPLE)
                clear_queue_state()
                cpu = stack.cpu_seconds("worker")
                try:
                    result = _product_batch(ctx, n, max(60.0, n / 5))
                except Exception as exc:  # noqa: BLE001 - one failed side is reported, the others still count
                    ctx.log(f"metrics {mode:3} batch rep {rep + 1} failed: {exc!r}")
                    runs.append({"part": "batch", "mode": mode, "rep": rep + 1, "error": repr(exc)})
                    continue
                result["worker_cpu_ms_per_job"] = (stack.cpu_seconds("worker") - cpu) * 1000 / max(1, n)
                result.update(part="batch", mode=mode, rep=rep + 1)
                runs.append(result)
                ctx.log(
                    f"metrics {mode:3} batch n={n} rep {rep + 1}: {result.get('throughput_per_s', math.nan):.0f}/s,"
                    f" all done {result.get('all_done_s', math.nan):.2f}s after due"
                )
            finally:
                stack.stop_all()
    counted: dict[str, Any] | None = None
    if ctx.profile.metrics_instructions and instructions.available():
        small, large = ctx.profile.metrics_instructions
        ctx.log(f"metrics: instructions per operation under callgrind ({small} and {large} operations)")
        counted = instructions.measure(ctx.env, ctx.work_dir, small=small, large=large)
        for kind, sides in counted["per_operation"].items():
            ctx.log(f"metrics instructions {kind:6}: {sides['cost_percent']:+.2f} %")
    return {
        "runs": runs,
        "instructions": counted,
        "connections": METRICS_CONNECTIONS,
        "batch_orders": n,
        "batch_workers": 2,
        "scrape_ms": scrape,
        "scrape_orders": ctx.profile.list_seed_orders,
    }


SCENARIOS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "api": scenario_api,
    "batch": scenario_batch,
    "webhooks": scenario_webhooks,
    "precision": scenario_precision,
    "precision_load": scenario_precision_load,
    "drift": scenario_drift,
    "scale": scenario_scale,
    "metrics": scenario_metrics,
    "calendar": scenario_calendar,
}


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "unknown"


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    import django
    import granian
    import redis as redis_py
    import rq

    from orders import jobqueue

    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    if connection.vendor == "sqlite":
        import sqlite3

        # SQLite has no VERSION(); the library linked into Python is the database.
        db_version = sqlite3.sqlite_version
    else:
        with connection.cursor() as cursor:
            cursor.execute("SELECT VERSION()")
            db_version = cursor.fetchone()[0]
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "cpu_model": cpu_model,
        "load_average_at_start": os.getloadavg(),
        "versions": {
            "python": platform.python_version(),
            "django": django.get_version(),
            "rq": rq.__version__,
            "rq-scheduler": version("rq-scheduler"),
            "granian": granian.__version__,
            "redis-py": redis_py.__version__,
            "redis-server": jobqueue.connection().info("server")["redis_version"],
            "database": f"{connection.vendor} {db_version}",
            "wrk": _version(["wrk", "--version"]).split(" [")[0] if shutil.which("wrk") else "missing",
        },
    }


def run(
    profile: Profile,
    env: dict[str, str],
    work_dir: Path,
    only: list[str] | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the scenarios in turn; `checkpoint` receives the results after each one, so a long run
    stopped half-way still leaves what it measured."""
    ctx = Context(profile=profile, env=env, work_dir=work_dir)
    began = time.monotonic()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": asdict(profile),
        # BENCH_COMMIT names what was measured when the tree is not a git checkout (a snapshot).
        "commit": os.environ.get("BENCH_COMMIT") or _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "machine": machine_info(),
        "settings": {
            "procfile": (ROOT / "Procfile").read_text().strip().splitlines(),
            "scheduler_poll_interval_s": settings.SCHEDULER_POLL_INTERVAL_SECONDS,
            "executor": settings.ORDER_EXECUTOR,
            "conn_max_age": settings.DATABASES["default"]["CONN_MAX_AGE"],
            "email": env.get("EMAIL_URL", "consolemail:// (default)"),
            "log_level": env.get("LOG_LEVEL", "INFO"),
        },
    }
    for name, scenario in SCENARIOS.items():
        if only and name not in only:
            continue
        ctx.log(f"== {name}")
        t0 = time.monotonic()
        results[name] = scenario(ctx)
        results[name]["seconds"] = round(time.monotonic() - t0, 1)
        results["duration_s"] = round(time.monotonic() - began, 1)
        if checkpoint:
            checkpoint(results)
    results["duration_s"] = round(time.monotonic() - began, 1)
    return results
