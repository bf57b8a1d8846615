"""Scenarios 1, 2 and 8: workers killed (SIGKILL), stopped (SIGTERM), and a poison order."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from orders.models import Execution, ExecutionStatus, Notification, Order, OrderStatus
from tests.faults.harness import kill_tree, record_measurement, wait_for, wait_until_up
from tests.faults.invariants import LimitSampler, assert_invariants, effects, order_log, settle
from tests.faults.orders_for_tests import at_second, one_time, recurring
from tests.processes import Stack

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _running(*orders: Order) -> bool:
    return Execution.objects.filter(order__in=orders, status=ExecutionStatus.RUNNING).count() == len(orders)


def test_sigkilled_workers_attempts_are_retried_and_take_effect_once(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks(FAULT_EXECUTOR_SECONDS="4")
    # One forking worker (killed together with its work horse) and one SimpleWorker.
    stack.start_worker("forking", worker_class="rq.worker.Worker")
    stack.start_worker("simple")
    stack.start_scheduler()
    wait_until_up(workers=2)
    due = at_second(4)
    a = one_time(owner, "killed A", due)
    b = one_time(owner, "killed B", due)
    r = recurring(owner, "recurring behind them", due, every=2, max_executions=3)
    wait_for(lambda: _running(a, b) or _running(a, r) or _running(b, r), timeout=20, what="two runs in progress")
    victims = list(Execution.objects.filter(status=ExecutionStatus.RUNNING).values_list("order_id", flat=True))
    time.sleep(0.5)  # let the executors start their effect
    killed_at = time.monotonic()
    horse_and_worker = kill_tree(stack.procs["forking"].pid)
    assert len(horse_and_worker) >= 2, "the forking worker had no work horse to kill"
    kill_tree(stack.procs["simple"].pid)
    stack.stop("forking")
    stack.stop("simple")
    # A supervisor restarts a worker; the killed attempts are recovered by the scheduler once their lease passes.
    stack.start_worker("restarted")
    recovered = wait_for(
        lambda: Execution.objects.filter(order_id__in=victims, status=ExecutionStatus.SUCCEEDED).count() == 2,
        timeout=120,
        what="killed attempts retried",
    )
    settle(timeout=60)
    record_measurement("1 worker SIGKILL", recovery_seconds=round(recovered, 1), bound_seconds=120)

    for order_id in victims:
        execution = Execution.objects.get(order_id=order_id, occurrence=1)
        assert execution.attempts == 2
        assert execution.attempt_history[0]["status"] == "failed"
        assert execution.attempt_history[0]["error"].startswith("WorkerLost")
        key = f"order-{order_id}-occurrence-1"
        calls = [c for c in effects() if c["key"] == key]
        # Delivered twice (at-least-once), took effect once: the first call was cut short by the kill.
        assert [c["phase"] for c in calls] == ["begin", "begin", "end"]
    assert time.monotonic() - killed_at < 120
    assert Order.objects.get(pk=r.pk).executions_count == 3
    assert_invariants(sampler=sampler)


def test_sigterm_lets_the_worker_finish_its_execution_once_then_exit(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks(FAULT_EXECUTOR_SECONDS="3")
    stack.start_worker("forking", worker_class="rq.worker.Worker")
    stack.start_worker("simple")
    stack.start_scheduler()
    wait_until_up(workers=2)
    due = at_second(4)
    a = one_time(owner, "finish A", due)
    b = one_time(owner, "finish B", due)
    wait_for(lambda: _running(a, b), timeout=20, what="both runs in progress")
    # SIGTERM to the worker's main process only, as `kill <pid>`, honcho and systemd KillMode=mixed do.
    for name in ("forking", "simple"):
        stack.procs[name].send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    for name in ("forking", "simple"):
        stack.procs[name].wait(30)
    exited_after = time.monotonic() - signalled
    record_measurement("2 worker SIGTERM", exit_seconds=round(exited_after, 1), executor_seconds=3)

    for order in (a, b):
        execution = Execution.objects.get(order=order)
        assert execution.status == ExecutionStatus.SUCCEEDED
        assert execution.attempts == 1
        assert [c["phase"] for c in effects() if c["order_id"] == order.pk] == ["begin", "end"]
        assert Order.objects.get(pk=order.pk).status == OrderStatus.COMPLETED
    for name in ("forking", "simple"):
        assert stack.procs[name].returncode == 0, stack.read_log(name)[-2000:]
    assert_invariants(sampler=sampler)


def test_poison_order_fails_after_bounded_retries_and_others_run_on_time(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks(ORDER_MAX_ATTEMPTS="3")
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=1)
    due = at_second(4)
    poison_once = one_time(owner, "poison once", due)
    poison_every = recurring(owner, "poison every 2s", due, every=2, max_executions=3)
    healthy = [one_time(owner, f"healthy {i}", at_second(4 + i)) for i in range(5)]
    healthy_every = recurring(owner, "healthy every 2s", due, every=2, max_executions=4)
    watched = [o.pk for o in (poison_once, poison_every, healthy_every, *healthy)]
    wait_for(
        lambda: all(
            o.status in (OrderStatus.COMPLETED, OrderStatus.FAILED) for o in Order.objects.filter(pk__in=watched)
        ),
        timeout=60,
        what="all orders finished",
    )
    settle(timeout=30)

    once = Execution.objects.get(order=poison_once)
    assert (once.status, once.attempts) == (ExecutionStatus.FAILED, 3)
    assert [h["status"] for h in once.attempt_history] == ["failed"] * 3
    assert Order.objects.get(pk=poison_once.pk).status == OrderStatus.FAILED
    every = Order.objects.get(pk=poison_every.pk)
    assert (every.status, every.executions_count) == (OrderStatus.FAILED, 3)
    assert set(every.executions.values_list("status", "attempts")) == {(ExecutionStatus.FAILED, 3)}
    failed_lines = [e for e in order_log() if e["event"] == "failed" and e["order_id"] == poison_once.pk]
    assert len(failed_lines) == 4  # three attempts and the order itself
    assert Notification.objects.filter(order=poison_once, kind=Notification.Kind.FAILED).exists()

    lateness = []
    for order in [*healthy, healthy_every]:
        current = Order.objects.get(pk=order.pk)
        assert current.status == OrderStatus.COMPLETED
        for execution in current.executions.all():
            assert execution.status == ExecutionStatus.SUCCEEDED and execution.attempts == 1
            assert execution.started_at is not None
            lateness.append((execution.started_at - execution.scheduled_for).total_seconds())
    record_measurement("8 poison order", healthy_max_lateness_seconds=round(max(lateness), 3))
    assert max(lateness) < 1.5, "a poison order delayed the healthy ones"
    assert_invariants(sampler=sampler)
