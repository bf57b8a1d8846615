"""`make soak`: simulated users creating, updating, converting, pausing and deleting orders over the
real API for SOAK_SECONDS (default 600) against a web server, 2 workers and a scheduler, with the
invariants checked continuously and once more when everything is quiet.

Not collected by a plain `pytest` run (the file name does not start with test_); run it by path:
    SOAK_SECONDS=60 make soak
SOAK_USERS (default 50) sets the number of simulated users.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rest_framework_simplejwt.tokens import AccessToken
from rq.registry import StartedJobRegistry

from orders import jobqueue
from orders.models import Execution, ExecutionStatus
from tests.conftest import make_user
from tests.faults.harness import Api, record_measurement, wait_for, wait_until_up
from tests.faults.invariants import LimitSampler, check_invariants
from tests.processes import Stack

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SOAK_USERS = int(os.environ.get("SOAK_USERS", "50"))
CHECK_EVERY_SECONDS = 15
MAX_ORDERS_PER_USER = 8

pytestmark = [
    pytest.mark.faults,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(SOAK_SECONDS + 600),
]


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _drained() -> bool:
    queue = jobqueue.queue()
    busy = Execution.objects.filter(status=ExecutionStatus.RUNNING).exists()
    return queue.count == 0 and StartedJobRegistry(queue=queue).count == 0 and not busy


class SimulatedUser:
    def __init__(self, user: Any, base_url: str, seed: int, shared: Soak) -> None:
        self.user = user
        self.api = Api(base_url, "")
        self.rng = random.Random(seed)
        self.shared = shared
        self.orders: list[int] = []

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        # A fresh token each time: a soak can outlive an access token's lifetime.
        self.api.token = str(AccessToken.for_user(self.user))
        started = time.monotonic()
        code, data = self.api.call(method, path, body)
        self.shared.record(method, path, code, time.monotonic() - started)
        return code, data

    def create(self) -> None:
        rng = self.rng
        body: dict[str, Any] = {"order_name": f"soak {rng.randrange(10**6)}", "schedule_time": _at(rng.uniform(1, 20))}
        if rng.random() < 0.5:
            body.update(
                is_recurring=True,
                repeat_interval=rng.randint(1, 10),
                repeat_unit="seconds",
                max_executions=rng.randint(1, 10),
                misfire_policy=rng.choice(["run_once", "skip", "run_all"]),
            )
        code, data = self.call("POST", "/api/orders/", body)
        if code == 201:
            self.orders.append(data["order_id"])

    def step(self) -> None:
        rng = self.rng
        if len(self.orders) < 2 or (len(self.orders) < MAX_ORDERS_PER_USER and rng.random() < 0.3):
            self.create()
            return
        order_id = rng.choice(self.orders)
        path = f"/api/orders/{order_id}/"
        action = rng.choice(["rename", "interval", "reschedule", "convert", "pause", "resume", "get", "delete"])
        if action == "rename":
            self.call("PATCH", path, {"order_name": f"renamed {rng.randrange(10**6)}"})
        elif action == "interval":
            self.call("PATCH", path, {"repeat_interval": rng.randint(1, 10)})
        elif action == "reschedule":
            self.call("PATCH", path, {"schedule_time": _at(rng.uniform(1, 15))})
        elif action == "convert":
            code, data = self.call("GET", path)
            if code == 200 and data["is_recurring"]:
                self.call("PATCH", path, {"is_recurring": False, "schedule_time": _at(rng.uniform(1, 10))})
            elif code == 200:
                body = {"is_recurring": True, "repeat_interval": rng.randint(1, 5), "repeat_unit": "seconds"}
                self.call("PATCH", path, {**body, "max_executions": data["executions_count"] + rng.randint(1, 5)})
        elif action in ("pause", "resume"):
            self.call("POST", f"{path}{action}/")
        elif action == "get":
            self.call("GET", f"{path}executions/")
        else:
            code, _ = self.call("DELETE", path)
            if code == 204:
                self.shared.deleted[order_id] = time.time()
                self.orders.remove(order_id)

    def run(self, until: float) -> None:
        while time.monotonic() < until:
            self.step()
            time.sleep(self.rng.uniform(0.5, 2.0))


class Soak:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[int] = Counter()
        self.server_errors: list[str] = []
        self.latencies: list[float] = []
        self.deleted: dict[int, float] = {}
        self.violations: set[str] = set()

    def record(self, method: str, path: str, code: int, seconds: float) -> None:
        with self.lock:
            self.codes[code] += 1
            self.latencies.append(seconds)
            if code >= 500:
                self.server_errors.append(f"{method} {path} -> {code}")


def test_soak_users_creating_updating_converting_and_deleting_keep_every_invariant(
    stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks(FAULT_EXECUTOR_SECONDS="0.05", RECONCILE_EVERY_SECONDS="30")
    stack.start_web()
    stack.start_worker()
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=2)
    soak = Soak()
    until = time.monotonic() + SOAK_SECONDS
    users = [SimulatedUser(make_user(), stack.base_url, seed, soak) for seed in range(SOAK_USERS)]
    threads = [threading.Thread(target=u.run, args=(until,), daemon=True) for u in users]
    for thread in threads:
        thread.start()
    checks = 0
    while time.monotonic() < until:
        time.sleep(min(CHECK_EVERY_SECONDS, max(0.0, until - time.monotonic())))
        soak.violations.update(check_invariants(settled=False, deleted=soak.deleted, sampler=sampler))
        checks += 1
    for thread in threads:
        thread.join(60)
    # Recurring orders keep running after the users stop, and the final check compares the database
    # with Redis: freeze the schedule first (no scheduler, queue drained, nothing running) so that
    # both are read in the same state. Anything overdue at the freeze counts as lost.
    stack.stop("scheduler")
    frozen_at = datetime.now(UTC)
    wait_for(_drained, timeout=120, what="queue drained")
    soak.violations.update(check_invariants(settled=True, deleted=soak.deleted, sampler=sampler, now=frozen_at))
    latencies = sorted(soak.latencies)
    record_measurement(
        "soak",
        users=SOAK_USERS,
        seconds=SOAK_SECONDS,
        requests=sum(soak.codes.values()),
        codes=dict(sorted(soak.codes.items())),
        p50_ms=round(1000 * latencies[len(latencies) // 2], 1),
        p99_ms=round(1000 * latencies[int(len(latencies) * 0.99)], 1),
        executions=Execution.objects.count(),
        deletes=len(soak.deleted),
        invariant_checks=checks + 1,
        samples=sampler.samples,
        violations=len(soak.violations),
    )
    for violation in sorted(soak.violations):
        print(f"[soak] violation: {violation}")
    assert not soak.server_errors, soak.server_errors[:20]
    assert not soak.violations, "\n".join(sorted(soak.violations)[:50])
