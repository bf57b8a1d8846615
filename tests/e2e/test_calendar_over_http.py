"""End to end: calendar orders created over HTTP and run by the real web server, rqworker and rqscheduler
processes."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from orders.models import Execution, Order
from tests.engine_helpers import log_lines
from tests.processes import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _call(url: str, token: str | None, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method="POST" if body is not None else "GET", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def _token(base_url: str) -> str:
    credentials = {"email": "calendar@example.com", "password": "a long enough passphrase 42"}
    status, body = _call(f"{base_url}/api/auth/signup", None, credentials)
    assert status == 201, body
    status, body = _call(f"{base_url}/api/auth/login", None, credentials)
    assert status == 200, body
    return str(body["access"])


def test_every_minute_cron_with_max_2_runs_exactly_twice_on_whole_minutes(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=1) as stack:
        token = _token(stack.base_url)
        status, body = _call(
            f"{stack.base_url}/api/orders/",
            token,
            {"order_name": "every minute", "cron": "* * * * *", "max_executions": 2, "time_zone": "Asia/Kathmandu"},
        )
        assert status == 201, body
        assert body["schedule_description"] == "Every minute (Asia/Kathmandu)"
        order_id = body["order_id"]
        first = datetime.fromisoformat(body["next_run_at"])
        assert first.second == 0 and first.microsecond == 0
        # At most two minutes until the second run, plus the time to see a wrong third one.
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if Order.objects.get(pk=order_id).status == "completed":
                break
            time.sleep(0.5)
        time.sleep(5)
        order = Order.objects.get(pk=order_id)
        assert order.status == "completed", stack.read_log("worker1")[-2000:]
        runs = list(Execution.objects.filter(order_id=order_id).order_by("occurrence"))
        assert [r.status for r in runs] == ["succeeded", "succeeded"]
        for k, run in enumerate(runs):
            assert run.scheduled_for == first + timedelta(minutes=k)
            assert run.scheduled_for.second == 0 and run.scheduled_for.microsecond == 0
            assert run.started_at is not None
            lateness = (run.started_at - run.scheduled_for).total_seconds()
            assert 0 <= lateness < 1.0, f"run {k + 1} started {lateness:.3f}s after its due time"
        started = [e for e in log_lines() if e["order_id"] == order_id and e["event"] == "started"]
        assert len(started) == 2


def test_a_monthly_orders_upcoming_runs_over_14_months_follow_the_rule(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=1) as stack:
        token = _token(stack.base_url)
        status, body = _call(
            f"{stack.base_url}/api/orders/",
            token,
            {
                "order_name": "month end",
                "schedule_time": "2031-01-30T02:30:00",
                "time_zone": "Europe/Berlin",
                "is_recurring": True,
                "repeat_interval": 1,
                "repeat_unit": "months",
            },
        )
        assert status == 201, body
        status, upcoming = _call(f"{stack.base_url}/api/orders/{body['order_id']}/upcoming?count=14", token)
        assert status == 200
        berlin = ZoneInfo("Europe/Berlin")
        walls = [datetime.fromisoformat(t).astimezone(berlin).strftime("%Y-%m-%d %H:%M") for t in upcoming["upcoming"]]
        # Day 30, or the last day of a shorter month; 2031-03-30 is the spring-forward day in Berlin,
        # where 02:30 does not exist and runs later by the gap, at 03:30.
        expected = ["2031-01-30 02:30", "2031-02-28 02:30", "2031-03-30 03:30"]
        expected += [f"2031-{m:02d}-30 02:30" for m in range(4, 13)]
        expected += ["2032-01-30 02:30", "2032-02-29 02:30"]
        assert walls == expected
