"""Scenario 11: a worker killed (SIGKILL) in the middle of webhook deliveries. The receiver sees each
webhook-id succeed once; the only repeats are retries of the same id (attempt 2), for the deliveries
the kill cut short."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orders import services
from orders.models import Execution, ExecutionStatus
from tests.faults.executors import effects_path
from tests.faults.harness import kill_tree, record_measurement, wait_for, wait_until_up
from tests.faults.invariants import LimitSampler, assert_invariants, settle
from tests.faults.orders_for_tests import at_second
from tests.processes import Stack
from tests.webhooks.receiver import ReceiverProcess
from webhooks.services import signing_secret_rotate

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ORDERS = 12


def test_worker_killed_mid_delivery_each_webhook_id_succeeds_once(
    owner: Any, stacks: Callable[..., Stack], sampler: LimitSampler, tmp_path: Path, settings: Any
) -> None:
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the receiver, here and in the stack's processes
    secret = signing_secret_rotate(user_id=owner.pk)
    # The receiver takes 2 s to answer, so the kill lands while every delivery of the batch is in flight.
    with ReceiverProcess(tmp_path, delay=2.0, secret=secret, effects_file=effects_path()) as receiver:
        stack = stacks(
            ORDER_EXECUTOR="orders.executors.place_order",
            WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
            # Within the attempt's lease (ORDER_EXECUTION_TIMEOUT_SECONDS=5 in the fault settings).
            WEBHOOK_TIMEOUT_SECONDS="4",
        )
        stack.start_worker("victim")
        stack.start_scheduler()
        wait_until_up(workers=1)
        due = at_second(4)
        orders = [
            services.order_create(
                user=owner,
                definition=services.OrderDefinition(
                    order_name=f"hook {i}", schedule_time=due, target_url=receiver.url(f"/ok?order={i}")
                ),
            )
            for i in range(ORDERS)
        ]
        wait_for(lambda: receiver.stats()["requests"] >= ORDERS, timeout=20, what="every delivery in flight")
        in_flight = set(receiver.stats()["attempts"])
        time.sleep(0.5)
        killed_at = time.monotonic()
        kill_tree(stack.procs["victim"].pid)
        stack.stop("victim")
        stack.start_worker("restarted")
        recovered = wait_for(
            lambda: Execution.objects.filter(order__in=orders, status=ExecutionStatus.SUCCEEDED).count() == ORDERS,
            timeout=120,
            what="the cut-short deliveries retried",
        )
        settle(timeout=60)
        stats = receiver.stats()
    record_measurement("11 worker SIGKILL mid-delivery", recovery_seconds=round(recovered, 1), bound_seconds=120)

    expected = {f"order-{o.pk}-occurrence-1" for o in orders}
    assert set(stats["succeeded"]) == expected
    assert stats["verified"] == stats["requests"], "every request carried a valid signature"
    for webhook_id, attempts in stats["attempts"].items():
        # The first delivery, then (if the kill cut it short) the retry of the same id: never a second
        # delivery of one attempt, never a new id for the same occurrence.
        assert attempts in ([1], [1, 2]), (webhook_id, attempts)
    retried = {i for i, a in stats["attempts"].items() if a == [1, 2]}
    assert retried and retried <= in_flight
    for order in orders:
        execution = Execution.objects.get(order=order, occurrence=1)
        assert execution.status == ExecutionStatus.SUCCEEDED
        if f"order-{order.pk}-occurrence-1" in retried:
            assert execution.attempts == 2
            assert execution.attempt_history[0]["error"].startswith("WorkerLost")
            assert execution.attempt_history[1]["delivery"]["status_code"] == 200
    assert time.monotonic() - killed_at < 120
    # The receiver's evidence (tests/webhooks/receiver.py --effects-file): one processed effect per
    # succeeded occurrence, no two overlapping calls for an order.
    assert_invariants(sampler=sampler)
