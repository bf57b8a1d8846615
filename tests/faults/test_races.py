"""Scenarios 9 and 10: users updating and deleting orders while they run, and the whole system
stopped for several intervals and started again in a random order."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection

from orders.models import Order, OrderStatus
from tests import processes
from tests.faults.conftest import api_for
from tests.faults.harness import (
    Api,
    RedisServer,
    Supervisor,
    TcpProxy,
    needs_mariadb,
    record_measurement,
    wait_for,
    wait_until_up,
)
from tests.faults.invariants import LimitSampler, assert_invariants, settle
from tests.faults.orders_for_tests import at_second, one_time, recurring
from tests.processes import Stack

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

RACE_SECONDS = float(os.environ.get("FAULT_RACE_SECONDS", "20"))


def _soon(seconds: float = 1.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


RECURRING = {"is_recurring": True, "repeat_interval": 1, "repeat_unit": "seconds", "max_executions": 40}


def _create_raced(api: Api, codes: list[int]) -> int:
    code, body = api.call("POST", "/api/orders/", {"order_name": "raced", "schedule_time": _soon(), **RECURRING})
    codes.append(code)
    if code != 201:
        # Say what the server answered: a thread that dies on a missing key hides the cause.
        raise AssertionError(f"POST /api/orders/ answered {code}: {body}")
    return int(body["order_id"])


def _race_one_order(api: Api, rng: random.Random, deleted: dict[int, float], codes: list[int], until: float) -> None:
    """One simulated user hammering one order at a time: update, convert, run now, delete, recreate."""
    order_id = _create_raced(api, codes)
    while time.monotonic() < until:
        time.sleep(rng.uniform(0.05, 0.4))
        action = rng.choice(["interval", "restart", "convert", "back", "run-now", "delete"])
        path = f"/api/orders/{order_id}/"
        if action == "interval":
            code, _ = api.call("PATCH", path, {"repeat_interval": rng.choice([1, 2])})
        elif action == "restart":
            code, _ = api.call("PATCH", path, {"schedule_time": _soon(rng.uniform(0.2, 1.5))})
        elif action == "convert":
            code, _ = api.call("PATCH", path, {"is_recurring": False, "schedule_time": _soon(0.5)})
        elif action == "back":
            code, _ = api.call("PATCH", path, {**RECURRING, "schedule_time": _soon(0.5)})
        elif action == "run-now":
            code, _ = api.call("POST", f"{path}run-now/")
        else:
            code, _ = api.call("DELETE", path)
            if code == 204:
                deleted[order_id] = time.time()
                codes.append(code)
                order_id = _create_raced(api, codes)
                continue
        codes.append(code)
    code, _ = api.call("DELETE", f"/api/orders/{order_id}/")
    codes.append(code)
    if code == 204:
        deleted[order_id] = time.time()


def _reporting(target: Callable[..., None], failures: list[str]) -> Callable[..., None]:
    """Run target in a thread and keep its exception for the test to fail with (pytest only warns)."""

    def run(*args: Any) -> None:
        try:
            target(*args)
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    return run


def test_updates_and_deletes_racing_with_runs_never_leave_two_chains_or_a_run_after_delete(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks(FAULT_EXECUTOR_SECONDS="0.3")
    stack.start_web()
    stack.start_worker()
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=2)
    api = api_for(stack, owner)
    deleted: dict[int, float] = {}
    codes: list[int] = []
    until = time.monotonic() + RACE_SECONDS
    failures: list[str] = []
    users = [
        threading.Thread(
            target=_reporting(_race_one_order, failures), args=(api, random.Random(seed), deleted, codes, until)
        )
        for seed in range(8)
    ]
    for user in users:
        user.start()
    for user in users:
        user.join(RACE_SECONDS + 60)
    time.sleep(3)  # a run wrongly started after DELETE has time to show
    settle(timeout=60)
    record_measurement("9 update/delete races", requests=len(codes), deletes=len(deleted))
    assert not failures, failures
    assert not [c for c in codes if c >= 500], f"server errors: {sorted(set(codes))}"
    # 400: run-now with nothing left, or a change refused; never anything else.
    assert set(codes) <= {200, 201, 202, 204, 400}, sorted(set(codes))
    assert not Order.objects.exists()
    assert len(deleted) >= 8
    assert_invariants(sampler=sampler, deleted=deleted)


@needs_mariadb()
def test_everything_stopped_for_several_intervals_and_restarted_in_random_order_keeps_the_invariants(
    owner: Any, stacks: Callable[..., Stack], private_redis: RedisServer, sampler: LimitSampler
) -> None:
    """Web, workers, scheduler, Redis (with its append-only file) and MariaDB (through a proxy) all
    stop, stay down for five intervals, and come back in a random order, under a Supervisor."""
    seed = int(os.environ.get("FAULT_SEED", str(int(time.time()))))
    print(f"[faults] scenario 10 seed {seed} (FAULT_SEED={seed} repeats this run)")
    rng = random.Random(seed)
    db_port = int(connection.settings_dict.get("PORT") or 3306)
    proxy = TcpProxy(db_port)
    proxy.start()
    stack = stacks(DATABASE_URL=processes.test_database_url().replace(f":{db_port}/", f":{proxy.port}/"))
    try:
        stack.start_web()
        stack.start_worker("worker1")
        stack.start_worker("worker2")
        stack.start_scheduler()
        wait_until_up(workers=2)
        private_redis.enable_persistence()
        api = api_for(stack, owner)
        start = at_second(3)
        policies = ("skip", "run_once", "run_all")
        orders = [recurring(owner, p, start, every=2, max_executions=6, misfire=p) for p in policies]
        orders += [one_time(owner, f"due while down {i}", at_second(9 + 2 * i)) for i in range(3)]
        wait_for(lambda: Order.objects.filter(executions_count__gte=1).count() >= 3, timeout=20, what="first runs")

        names = ["web", "worker1", "worker2", "scheduler", "redis", "mariadb"]
        rng.shuffle(names)
        stop_order = list(names)
        for name in names:
            if name == "redis":
                private_redis.kill(signal.SIGTERM)
            elif name == "mariadb":
                proxy.cut()
            else:
                stack.stop(name)
        time.sleep(10)  # five intervals of the recurring orders
        rng.shuffle(names)
        for name in names:
            if name == "redis":
                private_redis.start()
            elif name == "mariadb":
                proxy.restore()
            elif name == "web":
                stack.start_web()
            elif name == "scheduler":
                stack.start_scheduler()
            else:
                stack.start_worker(name)
            time.sleep(rng.uniform(0, 2))

        supervisor = Supervisor(stack, ["worker1", "worker2", "scheduler"])

        def created_over_api() -> bool:
            supervisor.check()
            code, _ = api.call("POST", "/api/orders/", {"order_name": "after the restart", "schedule_time": _soon(2)})
            return code == 201

        api_back = wait_for(created_over_api, timeout=60, step=0.5, what="the API creating orders again")
        ids = [o.pk for o in orders] + list(
            Order.objects.filter(order_name="after the restart").values_list("pk", flat=True)
        )

        def all_completed() -> bool:
            supervisor.check()
            return Order.objects.filter(pk__in=ids, status=OrderStatus.COMPLETED).count() == len(ids)

        try:
            done = wait_for(all_completed, timeout=90, what="every order completed")
        except AssertionError:
            stuck = [
                (
                    o.pk,
                    o.order_name,
                    o.status,
                    o.executions_count,
                    o.next_grid_index,
                    o.next_run_at,
                    o.job_id,
                    list(o.executions.values_list("occurrence", "grid_index", "status", "attempts")),
                )
                for o in Order.objects.filter(pk__in=ids).exclude(status=OrderStatus.COMPLETED)
            ]
            raise AssertionError(f"not completed (seed {seed}, stop {stop_order}, start {names}): {stuck}") from None
        settle(timeout=30)
    finally:
        proxy.close()
    record_measurement(
        "10 all stopped 10 s",
        seed=seed,
        stop_order=stop_order,
        restart_order=names,
        supervisor_restarts=supervisor.restarts,
        api_back_after_seconds=round(api_back, 1),
        completed_after_seconds=round(api_back + done, 1),
    )
    assert Order.objects.filter(order_name="after the restart").count() == 1
    for order in Order.objects.filter(pk__in=ids):
        assert order.executions_count == (order.max_executions or 1), (order, seed)
    assert_invariants(sampler=sampler)
