"""Scenarios 3 and 4: the scheduler killed while occurrences fall due, and three schedulers at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from orders.models import Execution, ExecutionStatus, Order, OrderStatus
from tests.faults.harness import record_measurement, wait_for, wait_until_up
from tests.faults.invariants import LimitSampler, assert_invariants, effects, settle
from tests.faults.orders_for_tests import at_second, bulk_one_time_orders, recurring
from tests.processes import Stack

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# 5,000 in `make soak` / FAULT_BULK_ORDERS=5000; CI uses fewer so that the suite stays within minutes.
BULK_ORDERS = int(os.environ.get("FAULT_BULK_ORDERS", "1000"))


def _lateness(execution: Execution) -> float:
    assert execution.started_at is not None
    return (execution.started_at - execution.scheduled_for).total_seconds()


def test_scheduler_killed_while_occurrences_fall_due_each_misfire_policy_as_documented(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks()
    stack.start_worker()
    stack.start_scheduler()
    wait_until_up(workers=1)
    start = at_second(3)
    policies = ("skip", "run_once", "run_all")
    orders = {p: recurring(owner, p, start, every=2, max_executions=5, misfire=p) for p in policies}
    wait_for(
        lambda: all(Order.objects.get(pk=o.pk).executions_count >= 2 for o in orders.values()),
        timeout=20,
        what="two runs each",
    )
    stack.stop("scheduler", signal.SIGKILL)
    down_from = datetime.now(UTC)
    time.sleep(10)
    restarted = time.monotonic()
    stack.start_scheduler("scheduler-again")
    first_after = wait_for(
        lambda: Execution.objects.filter(started_at__gt=down_from + timedelta(seconds=10)).exists(),
        timeout=30,
        what="a run after the restart",
    )
    wait_for(
        lambda: all(Order.objects.get(pk=o.pk).status == OrderStatus.COMPLETED for o in orders.values()),
        timeout=40,
        what="all three completed",
    )
    settle(timeout=20)
    record_measurement(
        "3 scheduler killed 10 s",
        first_run_after_restart_seconds=round(first_after, 1),
        all_completed_after_restart_seconds=round(time.monotonic() - restarted, 1),
    )

    runs = {
        p: list(o.executions.exclude(status=ExecutionStatus.SKIPPED).order_by("occurrence")) for p, o in orders.items()
    }
    skipped = {p: o.executions.filter(status=ExecutionStatus.SKIPPED).count() for p, o in orders.items()}
    for p in policies:
        assert len(runs[p]) == 5 and all(r.status == ExecutionStatus.SUCCEEDED for r in runs[p]), p
    # skip: the missed slots are recorded as skipped; every run that happened was on time.
    assert skipped["skip"] >= 3
    assert max(_lateness(r) for r in runs["skip"]) < 1.5
    # run_once: one late catch-up run stands for the missed slots, the rest of them are skipped.
    assert skipped["run_once"] >= 2
    assert sum(1 for r in runs["run_once"] if _lateness(r) > 3) == 1
    # run_all: nothing skipped, every missed slot ran (late), in grid order.
    assert skipped["run_all"] == 0
    assert [r.grid_index for r in runs["run_all"]] == [1, 2, 3, 4, 5]
    assert sum(1 for r in runs["run_all"] if _lateness(r) > 3) >= 2
    assert_invariants(sampler=sampler)


@pytest.mark.timeout(300 + BULK_ORDERS // 10)
def test_three_schedulers_and_many_orders_due_in_the_same_second_run_each_once(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler
) -> None:
    stack = stacks()
    for name in ("scheduler-a", "scheduler-b", "scheduler-c"):
        stack.start_scheduler(name)
    stack.start_worker()
    stack.start_worker()
    wait_until_up(workers=2)
    due = at_second(8 + BULK_ORDERS / 500)
    ids = bulk_one_time_orders(owner, BULK_ORDERS, due)
    assert datetime.now(UTC) < due - timedelta(seconds=2), "creating the orders took too long for this due time"
    wait_for(
        lambda: Order.objects.filter(pk__in=ids, status=OrderStatus.COMPLETED).count() == len(ids),
        timeout=30 + BULK_ORDERS / 20,
        step=0.5,
        what=f"{BULK_ORDERS} orders completed",
    )
    settle(timeout=30)
    finished = sorted(
        (f - due).total_seconds()
        for f in Execution.objects.filter(order_id__in=ids).values_list("finished_at", flat=True)
        if f is not None
    )
    record_measurement(
        "4 three schedulers",
        orders=len(ids),
        first_done_seconds=round(finished[0], 2),
        half_done_seconds=round(finished[len(finished) // 2], 2),
        all_done_seconds=round(finished[-1], 2),
    )
    assert len(finished) == len(ids)
    assert Execution.objects.filter(order_id__in=ids).exclude(status=ExecutionStatus.SUCCEEDED).count() == 0
    ends = [c for c in effects() if c["phase"] == "end"]
    assert len(ends) == len({c["key"] for c in ends}) == len(ids)
    assert_invariants(sampler=sampler)
