"""Scenarios 5 and 6: Redis loses its data (FLUSHALL, restart without persistence), and Redis is
down while users create, update and delete orders."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from orders import jobqueue, services
from orders.models import Execution, ExecutionStatus, Order, OrderStatus
from tests.faults.conftest import api_for
from tests.faults.harness import RedisServer, Supervisor, record_measurement, wait_for, wait_until_up
from tests.faults.invariants import LimitSampler, assert_invariants, order_log, settle
from tests.faults.orders_for_tests import at_second, one_time, recurring
from tests.processes import Stack

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _every_active_order_has_its_job() -> bool:
    wanted = list(
        Order.objects.filter(
            status__in=(OrderStatus.SCHEDULED, OrderStatus.RUNNING), next_run_at__isnull=False
        ).values_list("job_id", flat=True)
    )
    try:
        return set(wanted) <= jobqueue.live_job_ids(wanted)
    except redis.RedisError:
        return False


def _all_finished(ids: list[int]) -> bool:
    return not Order.objects.filter(pk__in=ids).exclude(status__in=(OrderStatus.COMPLETED, OrderStatus.FAILED)).exists()


def test_redis_flushall_and_empty_restart_reschedule_every_active_order_from_the_database(
    owner: Any, stacks: Callable[..., Stack], private_redis: RedisServer, sampler: LimitSampler
) -> None:
    stack = stacks(RECONCILE_EVERY_SECONDS="5")
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=1)
    start = at_second(3)
    orders = [recurring(owner, f"every 2s #{i}", start, every=2, max_executions=8) for i in range(6)]
    orders += [one_time(owner, f"once #{i}", at_second(9 + i)) for i in range(4)]
    ids = [o.pk for o in orders]
    wait_for(lambda: Execution.objects.count() >= 6, timeout=20, what="first runs")
    supervisor = Supervisor(stack, ["worker1", "scheduler"])

    private_redis.client().flushall()
    assert not _every_active_order_has_its_job()
    after_flush = wait_for(
        supervisor.watching(_every_active_order_has_its_job), timeout=60, what="schedule rebuilt after FLUSHALL"
    )

    private_redis.kill(signal.SIGKILL)
    time.sleep(2)
    private_redis.start()  # same port, no persistence: it comes back empty
    after_restart = wait_for(
        supervisor.watching(_every_active_order_has_its_job), timeout=60, what="schedule rebuilt after restart"
    )
    wait_for(supervisor.watching(lambda: _all_finished(ids)), timeout=60, what="every order finished")
    settle(timeout=30)
    record_measurement(
        "5 redis flushall / empty restart",
        rebuilt_after_flushall_seconds=round(after_flush, 1),
        rebuilt_after_restart_seconds=round(after_restart, 1),
        supervisor_restarts=supervisor.restarts,
        reconcile_every_seconds=5,
    )
    for order in Order.objects.filter(pk__in=ids):
        assert order.status == OrderStatus.COMPLETED
        assert order.executions_count == (order.max_executions or 1)
    assert_invariants(sampler=sampler)


def test_writes_while_redis_is_down_are_503_with_nothing_committed_or_committed_and_run_after_it_returns(
    owner: Any, stacks: Callable[..., Stack], private_redis: RedisServer, sampler: LimitSampler
) -> None:
    stack = stacks(RECONCILE_EVERY_SECONDS="5")
    stack.start_web()
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=1)
    api = api_for(stack, owner)
    due = at_second(25)
    kept = one_time(owner, "untouched", due)
    api_delete = one_time(owner, "deleted over the API", due)
    api_update = one_time(owner, "updated over the API", due)
    svc_delete = one_time(owner, "deleted by the service", due)
    svc_update = one_time(owner, "updated by the service", due)
    supervisor = Supervisor(stack, ["worker1", "scheduler"])
    private_redis.enable_persistence()
    private_redis.kill(signal.SIGTERM)  # an orderly stop: it comes back with its (now partly stale) jobs

    new_time = at_second(27)
    codes: dict[str, int] = {}
    codes["create"], _ = api.call(
        "POST", "/api/orders/", {"order_name": "created over the API", "schedule_time": due.isoformat()}
    )
    codes["update"], _ = api.call("PATCH", f"/api/orders/{api_update.pk}/", {"schedule_time": new_time.isoformat()})
    codes["delete"], _ = api.call("DELETE", f"/api/orders/{api_delete.pk}/")
    deleted: dict[int, float] = {}
    if codes["delete"] == 204:
        deleted[api_delete.pk] = time.time()
    # The services the API calls, called directly: the database commits, the Redis writes fail
    # and are left to reconcile.
    svc_created = one_time(owner, "created by the service", due)
    services.order_update(order=svc_update, changes={"schedule_time": new_time})
    services.order_delete(order=svc_delete)
    deleted[svc_delete.pk] = time.time()

    for op, code in codes.items():
        assert code in (503, 200, 201, 204), f"{op} answered {code} while Redis was down"
    if codes["create"] == 503:
        assert not Order.objects.filter(order_name="created over the API").exists()
    if codes["update"] == 503:
        assert Order.objects.get(pk=api_update.pk).schedule_time == due
    if codes["delete"] == 503:
        assert Order.objects.filter(pk=api_delete.pk).exists()

    time.sleep(3)
    private_redis.start()
    back = time.monotonic()
    rebuilt = wait_for(
        supervisor.watching(_every_active_order_has_its_job), timeout=60, what="schedule repaired after Redis returned"
    )
    remaining = list(Order.objects.values_list("pk", flat=True))
    wait_for(supervisor.watching(lambda: _all_finished(remaining)), timeout=60, what="every remaining order ran")
    settle(timeout=30)
    record_measurement(
        "6 writes while redis down",
        api_codes=codes,
        repaired_after_return_seconds=round(rebuilt, 1),
        all_ran_after_return_seconds=round(time.monotonic() - back, 1),
        supervisor_restarts=supervisor.restarts,
    )

    for order in Order.objects.all():
        runs = list(order.executions.all())
        assert [r.status for r in runs] == [ExecutionStatus.SUCCEEDED], order
    assert Execution.objects.get(order=svc_created).scheduled_for == due
    assert Execution.objects.get(order=svc_update).scheduled_for == new_time
    expected_api_time = new_time if codes["update"] == 200 else due
    assert Execution.objects.get(order=api_update).scheduled_for == expected_api_time
    assert Execution.objects.filter(order=kept).count() == 1
    started = {e["order_id"] for e in order_log() if e["event"] == "started"}
    assert not started & set(deleted)
    assert_invariants(sampler=sampler, deleted=deleted)
