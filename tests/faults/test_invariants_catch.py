"""The invariant checker itself: each planted defect is reported (a checker that cannot fail would
make every fault scenario pass vacuously)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings

from orders import jobqueue
from orders.models import Execution, ExecutionStatus, Order
from orders.services import OrderDefinition, order_create
from tests.faults.executors import effects_path
from tests.faults.harness import RedisServer
from tests.faults.invariants import LimitSampler, check_invariants

pytestmark = [pytest.mark.faults, pytest.mark.django_db(transaction=True)]


def _recurring(owner: Any, max_executions: int) -> Order:
    start = datetime.now(UTC) + timedelta(seconds=60)
    return order_create(
        user=owner,
        definition=OrderDefinition(
            order_name="planted",
            schedule_time=start,
            is_recurring=True,
            repeat_interval=10,
            repeat_unit="seconds",
            max_executions=max_executions,
        ),
    )


def _run(order: Order, occurrence: int, grid_index: int, **extra: Any) -> Execution:
    due = order.schedule_time + timedelta(seconds=10 * (grid_index - 1))
    fields: dict[str, Any] = {
        "order": order,
        "occurrence": occurrence,
        "schedule_version": order.schedule_version,
        "grid_index": grid_index,
        "scheduled_for": due,
        "started_at": due,
        "finished_at": due,
        "status": ExecutionStatus.SUCCEEDED,
        "attempts": 1,
        **extra,
    }
    return Execution.objects.create(**fields)


def test_a_clean_order_passes(owner: Any, private_redis: RedisServer) -> None:
    effects_path().write_text("")
    _recurring(owner, 3)
    assert check_invariants() == []


def test_each_planted_defect_is_reported(owner: Any, private_redis: RedisServer) -> None:
    effects_path().write_text("")
    over = _recurring(owner, 1)
    Order.objects.filter(pk=over.pk).update(executions_count=2)
    twice = _recurring(owner, 5)
    _run(twice, 1, grid_index=1)
    _run(twice, 2, grid_index=1)
    Order.objects.filter(pk=twice.pk).update(executions_count=2)
    early = _recurring(owner, 5)
    _run(early, 1, grid_index=1, started_at=early.schedule_time - timedelta(seconds=1))
    Order.objects.filter(pk=early.pk).update(executions_count=1)
    lost_job = _recurring(owner, 5)
    jobqueue.cancel(lost_job.job_id)
    deleted_at = time.time() - 5
    with settings.ORDER_LOG_FILE.open("a") as log:
        line = {
            "ts": datetime.now(UTC).isoformat(),
            "event": "started",
            "order_id": 999999,
            "occurrence": 1,
            "attempt": 1,
        }
        log.write(json.dumps(line) + "\n")
    sampler = LimitSampler()
    sampler.sample()

    problems = check_invariants(deleted={999999: deleted_at}, sampler=sampler)
    text = "\n".join(problems)
    assert f"order {over.pk}: executions_count 2 > limit 1" in text  # from the sampler
    assert f"order {over.pk}: executions_count 2 but 0 execution rows" in text
    assert f"order {twice.pk}: slot v1 k1 has 2 executions" in text
    assert f"order {early.pk} occurrence 1: started before it was due" in text
    assert f"order {twice.pk} occurrence 1: 1 attempts recorded, 0 started lines" in text
    assert f"order-{twice.pk}-occurrence-1: succeeded with 0 completed executor calls" in text
    assert f"order {lost_job.pk} (scheduled): live jobs [], want [{lost_job.job_id}]" in text
    assert "order 999999: a run started" in text
