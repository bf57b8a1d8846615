"""End to end: /metrics scraped from the real web server (scripts/web) while real rqworker and rqscheduler processes run
known orders (successes, a failure for good, a worker killed mid-run), and a real reconcile_orders
repairs a lost job; every number is checked against what was run and against the database."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.urls import resolve

from orders import jobqueue
from orders.models import Execution, Order
from scheduler_site.middleware import view_label
from tests.metrics_helpers import Scrape
from tests.processes import PYTHON, ROOT, Stack, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

TOKEN = "e2e-metrics-token-0123456789abcdef"


def _request(url: str, *, token: str | None = None, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _scrape(stack: Stack) -> Scrape:
    status, body = _request(f"{stack.base_url}/metrics", token=TOKEN)
    assert status == 200, body
    return Scrape(body.decode())


def _scrape_until(stack: Stack, holds: Callable[[Scrape], bool], timeout: float = 10) -> Scrape:
    """Scrape until `holds` (each web and worker process writes its counts within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        result = _scrape(stack)
        if holds(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.25)


def _wait(predicate: Callable[[], bool], timeout: float, what: str, stack: Stack) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached; scheduler log:\n{stack.read_log('scheduler')[-2000:]}")
        time.sleep(0.2)


def _lateness_in_database() -> float:
    return sum(
        (e.started_at - e.scheduled_for).total_seconds()
        for e in Execution.objects.exclude(status="skipped")
        if e.started_at is not None
    )


def test_metrics_scraped_from_the_real_processes_count_what_ran(tmp_path: Path) -> None:
    env: dict[str, Any] = {
        "METRICS_TOKEN": TOKEN,
        "ORDER_EXECUTOR": "tests.faults.executors.by_name",
        "ORDER_SLOW_EXECUTOR_SECONDS": "2",
        "ORDER_MAX_ATTEMPTS": "2",
        "ORDER_RETRY_BASE_DELAY_SECONDS": "1",
        # A lease of 3 + 1 + 5 = 9 s, checked every second: a killed worker's run is recovered quickly.
        "ORDER_EXECUTION_TIMEOUT_SECONDS": "3",
        "ORDER_JOB_TIMEOUT_MARGIN_SECONDS": "1",
        "ABANDONED_CHECK_EVERY_SECONDS": "1",
        # Only the start-up pass and the reconcile_orders below reconcile during the test.
        "RECONCILE_EVERY_SECONDS": "600",
    }
    with running_stack(tmp_path, workers=2, **env) as stack:
        base = stack.base_url
        orders_view, signup_view, metrics_view = (
            view_label(resolve(path)) for path in ("/api/orders/", "/api/auth/signup", "/metrics")
        )
        assert _request(f"{base}/metrics")[0] == 401
        assert _request(f"{base}/metrics", token="wrong")[0] == 401
        credentials = {"email": "metrics@example.com", "password": "a long enough passphrase 42"}
        assert _request(f"{base}/api/auth/signup", body=credentials)[0] == 201
        status, body = _request(f"{base}/api/auth/login", body=credentials)
        assert status == 200, body
        token = json.loads(body)["access"]

        def create(name: str, start: datetime, **fields: Any) -> int:
            status, body = _request(
                f"{base}/api/orders/",
                token=token,
                body={"order_name": name, "schedule_time": start.isoformat(), **fields},
            )
            assert status == 201, body
            return int(json.loads(body)["order_id"])

        # Phase 1: three successes and a poison order due together, and a recurring order 3 x 1 s.
        start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        phase1 = [create(f"ok {i}", start) for i in range(3)]
        phase1.append(create("poison", start))
        phase1.append(
            create("every second", start, is_recurring=True, repeat_interval=1, repeat_unit="seconds", max_executions=3)
        )
        _wait(
            lambda: Order.objects.filter(pk__in=phase1, status__in=["completed", "failed"]).count() == 5,
            30,
            "phase 1 finished",
            stack,
        )
        result = _scrape_until(stack, lambda r: r.total("scheduler_executions_total") >= 8)
        assert result.value("scheduler_executions_total", status="succeeded") == 6
        assert result.value("scheduler_executions_total", status="failed") == 1  # poison, after 2 attempts
        assert result.value("scheduler_executions_total", status="retried") == 1
        assert result.total("scheduler_executions_total", status="skipped") == 0
        assert result.value("scheduler_start_lateness_seconds_count") == 7  # first attempts only
        assert result.value("scheduler_workers_alive") == 2
        assert 0 <= result.value("scheduler_heartbeat_age_seconds") < 5
        assert result.value("scheduler_due_backlog") == 0
        assert result.value("scheduler_oldest_due_age_seconds") == 0
        assert result.value("scheduler_scheduled_orders") == 0
        assert result.value("scheduler_orders", status="completed") == 4
        assert result.value("scheduler_orders", status="failed") == 1

        # Phase 2: both workers are killed while a slow order runs; a new worker takes over once the
        # scheduler has recovered the abandoned run.
        slow = create("slow", (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0))
        _wait(lambda: Execution.objects.filter(order_id=slow, status="running").exists(), 15, "slow run", stack)
        stack.stop("worker1", sig=signal.SIGKILL)
        stack.stop("worker2", sig=signal.SIGKILL)
        stack.start_worker()
        _wait(lambda: Order.objects.get(pk=slow).status == "completed", 40, "slow order recovered", stack)
        (run,) = Execution.objects.filter(order_id=slow)
        assert run.attempts == 2 and "WorkerLost" in run.attempt_history[0]["error"]

        # Phase 3: Redis loses a future order's job; a real `manage.py reconcile_orders` puts it back.
        future = create("next year", (datetime.now(UTC) + timedelta(days=365)).replace(microsecond=0))
        jobqueue.cancel(Order.objects.get(pk=future).job_id)
        reconciled = subprocess.run(
            [PYTHON, "manage.py", "reconcile_orders"], cwd=ROOT, env=stack.env, capture_output=True, text=True
        )
        assert reconciled.returncode == 0, reconciled.stderr
        report = re.search(
            r"scheduled (\d+) missing jobs, re-queued (\d+) pending executions, removed (\d+) orphan jobs",
            reconciled.stdout,
        )
        assert report is not None, reconciled.stdout
        scheduled, requeued, orphans = (int(n) for n in report.groups())
        assert scheduled == 1

        result = _scrape_until(
            stack,
            lambda r: (
                r.total("scheduler_executions_total") >= 11
                and r.total("scheduler_http_requests_total", view=orders_view, method="POST") >= 7
            ),
        )
        assert result.value("scheduler_executions_total", status="succeeded") == 7
        assert result.value("scheduler_executions_total", status="failed") == 1
        assert result.value("scheduler_executions_total", status="retried") == 2  # poison's first, the lost run
        assert result.value("scheduler_recovered_runs_total") == 1
        assert result.value("scheduler_reconcile_repairs_total", kind="scheduled") == scheduled
        assert result.value("scheduler_reconcile_repairs_total", kind="requeued") == requeued
        assert result.value("scheduler_reconcile_repairs_total", kind="orphan_removed") == orphans
        assert result.value("scheduler_scheduled_orders") == 1
        assert result.value("scheduler_due_backlog") == 0
        assert result.value("scheduler_redis_scheduled_jobs") == 1
        assert result.value("scheduler_queued_jobs") == 0

        # The lateness histogram: one observation per execution's first attempt, summing to what the
        # rows say (started_at - scheduled_for), none of them later than 2.5 s.
        assert result.value("scheduler_start_lateness_seconds_count") == 8
        assert result.value("scheduler_start_lateness_seconds_bucket", le="+Inf") == 8
        assert result.value("scheduler_start_lateness_seconds_bucket", le="2.5") == 8
        assert result.value("scheduler_start_lateness_seconds_sum") == pytest.approx(_lateness_in_database(), abs=0.01)

        # HTTP: by view, across both web server processes.
        assert result.value("scheduler_http_requests_total", view=orders_view, method="POST", status="201") == 7
        assert result.value("scheduler_http_requests_total", view=signup_view, method="POST", status="201") == 1
        assert result.value("scheduler_http_requests_total", view=metrics_view, method="GET", status="401") == 2
        assert result.value("scheduler_http_request_duration_seconds_count", view=orders_view, method="POST") == 7
