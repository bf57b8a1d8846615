"""End to end: the real web server (scripts/web), rqworker and rqscheduler processes; the order is created over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from orders.models import Execution, Order
from tests.engine_helpers import log_lines
from tests.processes import running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _post(url: str, token: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def test_recurring_every_2_seconds_runs_exactly_3_times_2_seconds_apart(tmp_path: Path) -> None:
    with running_stack(tmp_path, workers=1) as stack:
        credentials = {"email": "e2e@example.com", "password": "a long enough passphrase 42"}
        status, body = _post(f"{stack.base_url}/api/auth/signup", None, credentials)
        assert status == 201, body
        status, body = _post(f"{stack.base_url}/api/auth/login", None, credentials)
        assert status == 200, body
        token = body["access"]
        start = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
        status, body = _post(
            f"{stack.base_url}/api/orders/",
            token,
            {
                "order_name": "every 2s",
                "schedule_time": start.isoformat(),
                "is_recurring": True,
                "repeat_interval": 2,
                "repeat_unit": "seconds",
                "max_executions": 3,
            },
        )
        assert status == 201, body
        order_id = body["order_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            order = Order.objects.get(pk=order_id)
            if order.status == "completed":
                break
            time.sleep(0.25)
        # Give a wrongly scheduled 4th run the chance to show up before judging.
        time.sleep(3)
        order = Order.objects.get(pk=order_id)
        assert order.status == "completed", stack.read_log("worker1")[-2000:]
        runs = list(Execution.objects.filter(order_id=order_id).order_by("occurrence"))
        assert [r.status for r in runs] == ["succeeded"] * 3
        assert order.executions_count == 3
        for k, run in enumerate(runs):
            due = start + timedelta(seconds=2 * k)
            assert run.scheduled_for == due
            assert run.started_at is not None
            lateness = (run.started_at - due).total_seconds()
            assert 0 <= lateness < 1.0, f"run {k + 1} started {lateness:.3f}s after its due time"
        started = [e for e in log_lines() if e["order_id"] == order_id and e["event"] == "started"]
        assert len(started) == 3
