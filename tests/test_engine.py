"""The scheduling engine against real MariaDB/Redis, the real rq-scheduler enqueue step and a real RQ
worker in burst mode (tests/engine_helpers.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.utils import timezone

from orders import engine, jobqueue, repair, services
from orders.models import Execution, Notification, Order
from tests.conftest import make_user
from tests.engine_helpers import log_lines, run_until, tick, work
from tests.processes import running_stack

pytestmark = pytest.mark.django_db(transaction=True)


def whole_second(offset: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=offset)).replace(microsecond=0)


def create(user: Any = None, **fields: Any) -> Order:
    fields.setdefault("order_name", "test order")
    fields.setdefault("schedule_time", whole_second(2))
    return services.order_create(user=user or make_user(), definition=services.OrderDefinition(**fields))


def recurring(user: Any = None, **fields: Any) -> Order:
    fields.setdefault("is_recurring", True)
    fields.setdefault("repeat_interval", 1)
    fields.setdefault("repeat_unit", "seconds")
    return create(user, **fields)


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


def executions(order: Order) -> list[Execution]:
    return list(Execution.objects.filter(order_id=order.pk).order_by("occurrence"))


def ran(order: Order) -> list[Execution]:
    return [e for e in executions(order) if e.status != "skipped"]


def settle(seconds: float) -> None:
    """Keep scheduler and worker going for a while, so that a wrong extra run would show up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick()
        time.sleep(0.1)


# --- one-time and recurring ---------------------------------------------------------------------------


def test_recurring_order_runs_exactly_max_executions_on_its_grid() -> None:
    order = recurring(max_executions=3)
    run_until(lambda: reload(order).status == "completed", timeout=20)
    settle(2.5)
    runs = ran(order)
    assert [r.status for r in runs] == ["succeeded"] * 3
    anchor = order.schedule_time
    for k, run in enumerate(runs):
        assert run.scheduled_for == anchor + timedelta(seconds=k)
        assert run.started_at is not None and run.started_at >= run.scheduled_for
    assert reload(order).executions_count == 3
    assert reload(order).job_id == ""


def test_occurrence_delivered_early_does_not_start_early() -> None:
    order = create(schedule_time=whole_second(4))
    # Deliver the job straight to the queue 4 s ahead of its due time, as a misbehaving scheduler might.
    jobqueue.queue().enqueue(jobqueue.OCCURRENCE_FUNC, args=(order.pk, order.schedule_version, 1))
    work()
    assert executions(order) == []
    run_until(lambda: reload(order).status == "completed", timeout=15)
    (run,) = executions(order)
    assert run.started_at is not None and run.started_at >= order.schedule_time


def test_duplicate_delivery_has_one_effect() -> None:
    order = create(schedule_time=whole_second(1))
    time.sleep(1.2)
    for _ in range(3):  # the same occurrence handed out three more times
        jobqueue.queue().enqueue(jobqueue.OCCURRENCE_FUNC, args=(order.pk, order.schedule_version, 1))
    tick()
    settle(1)
    assert len(executions(order)) == 1
    assert [e["event"] for e in log_lines() if e["event"] == "started"] == ["started"]


def test_two_runs_of_one_order_never_overlap(tmp_path: Path) -> None:
    # Each run takes 1.5 s but the order is due every second, with two real workers competing.
    with running_stack(
        tmp_path, web=False, workers=2, ORDER_EXECUTOR="tests.faults.executors.slow", ORDER_SLOW_EXECUTOR_SECONDS="1.5"
    ):
        order = recurring(max_executions=3)
        deadline = time.monotonic() + 60
        while reload(order).status != "completed" and time.monotonic() < deadline:
            time.sleep(0.2)
    assert reload(order).status == "completed"
    runs = ran(order)
    assert [r.status for r in runs] == ["succeeded"] * 3
    for before, after in pairwise(runs):
        assert before.finished_at is not None and after.started_at is not None
        assert after.started_at >= before.finished_at


# --- changes mid-run ----------------------------------------------------------------------------------


def test_update_mid_run_leaves_exactly_one_chain() -> None:
    order = recurring(max_executions=4)
    run_until(lambda: reload(order).executions_count >= 1, timeout=10)
    old = reload(order)
    stale_args = (old.pk, old.schedule_version, old.next_grid_index)
    services.order_update(order=old, changes={"repeat_interval": 2})
    # Even if the cancelled job of the old definition were delivered, it does nothing.
    jobqueue.queue().enqueue(jobqueue.OCCURRENCE_FUNC, args=stale_args)
    run_until(lambda: reload(order).status == "completed", timeout=30)
    settle(2.5)
    runs = ran(order)
    assert len(runs) == 4
    assert len({r.schedule_version for r in runs[1:]}) == 1
    later = [r.scheduled_for for r in runs[1:]]
    assert all((b - a) == timedelta(seconds=2) for a, b in pairwise(later))


def test_convert_one_time_to_recurring_and_back() -> None:
    order = create(schedule_time=whole_second(30))
    order = services.order_update(
        order=order,
        changes={
            "is_recurring": True,
            "repeat_interval": 1,
            "repeat_unit": "seconds",
            "max_executions": 2,
            "schedule_time": whole_second(1),
        },
    )
    run_until(lambda: reload(order).status == "completed", timeout=15)
    assert reload(order).executions_count == 2
    order = services.order_update(
        order=reload(order), changes={"is_recurring": False, "schedule_time": whole_second(1)}
    )
    assert order.max_executions is None and order.status == "scheduled"
    run_until(lambda: reload(order).status == "completed", timeout=15)
    settle(1.5)
    assert reload(order).executions_count == 3
    assert len(ran(order)) == 3
    assert [e["event"] for e in log_lines() if e["event"] == "converted"] == ["converted", "converted"]


def test_max_executions_below_count_is_refused_and_equal_completes() -> None:
    order = recurring(max_executions=5)
    run_until(lambda: reload(order).executions_count >= 2, timeout=10)
    services.order_pause(order=reload(order))
    count = reload(order).executions_count
    with pytest.raises(ValidationError) as err:
        services.order_update(order=reload(order), changes={"max_executions": count - 1})
    assert "max_executions" in err.value.message_dict
    services.order_resume(order=reload(order))
    services.order_update(order=reload(order), changes={"max_executions": reload(order).executions_count})
    settle(1.5)
    final = reload(order)
    assert final.status == "completed"
    assert final.executions_count == count


def test_pause_stops_runs_and_resume_continues_to_exactly_max() -> None:
    order = recurring(max_executions=4, misfire_policy="run_all")
    run_until(lambda: reload(order).executions_count >= 1, timeout=10)
    services.order_pause(order=reload(order))
    paused_count = reload(order).executions_count
    settle(2.5)
    assert reload(order).executions_count == paused_count
    assert reload(order).status == "paused"
    services.order_resume(order=reload(order))
    run_until(lambda: reload(order).status == "completed", timeout=20)
    settle(1.5)
    assert len(ran(order)) == 4


def test_nothing_starts_after_delete_returns_even_with_a_run_in_progress(tmp_path: Path) -> None:
    with running_stack(
        tmp_path, web=False, workers=2, ORDER_EXECUTOR="tests.faults.executors.slow", ORDER_SLOW_EXECUTOR_SECONDS="1.5"
    ):
        order = recurring(max_executions=10)
        deadline = time.monotonic() + 30
        while not Execution.objects.filter(order_id=order.pk, status="running").exists():
            assert time.monotonic() < deadline, "no run started"
            time.sleep(0.05)
        services.order_delete(order=reload(order))  # while a run is in progress
        deleted_at = datetime.now(UTC)
        time.sleep(4)  # several intervals: the next occurrences would have started by now
    started = [
        datetime.fromisoformat(e["ts"].replace("Z", "+00:00"))
        for e in log_lines()
        if e["order_id"] == order.pk and e["event"] == "started"
    ]
    assert started and all(ts < deleted_at for ts in started)
    assert not [
        e
        for e in log_lines()
        if e["order_id"] == order.pk
        and e["event"] == "succeeded"
        and datetime.fromisoformat(e["ts"].replace("Z", "+00:00")) > deleted_at
    ]
    assert not Execution.objects.filter(order_id=order.pk).exists()
    assert jobqueue.all_order_job_ids() == set()


# --- failures ----------------------------------------------------------------------------------------


def test_failure_is_retried_with_backoff_and_every_attempt_is_visible(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.fail_first_attempt"
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 1
    order = create(schedule_time=whole_second(1))
    run_until(lambda: reload(order).status == "completed", timeout=20)
    (run,) = executions(order)
    assert run.status == "succeeded" and run.attempts == 2
    assert [a["status"] for a in run.attempt_history] == ["failed", "succeeded"]
    events = [e["event"] for e in log_lines() if e["order_id"] == order.pk]
    assert events == ["created", "started", "failed", "retried", "started", "succeeded", "completed"]


def test_permanently_failing_recurring_order_never_runs_beyond_max(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 2
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 0.5
    order = recurring(max_executions=2)
    run_until(lambda: reload(order).status == "failed", timeout=30)
    settle(2)
    runs = ran(order)
    assert len(runs) == 2
    assert all(r.status == "failed" and r.attempts == 2 for r in runs)
    final = reload(order)
    assert final.executions_count == 2 and final.last_result == "failed"
    kinds = list(Notification.objects.filter(user=order.user).values_list("kind", flat=True))
    assert kinds.count("failed") == 2  # the first occurrence, then the order itself


def test_retry_reruns_the_last_failed_occurrence(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 1
    order = create(schedule_time=whole_second(1))
    run_until(lambda: reload(order).status == "failed", timeout=15)
    settings.ORDER_EXECUTOR = "orders.executors.simulate_placement"
    services.order_retry(order=reload(order))
    run_until(lambda: reload(order).status == "completed", timeout=15)
    (run,) = executions(order)
    assert run.status == "succeeded" and run.attempts == 2 and run.result_ref == f"PL-{order.pk}-1"
    assert reload(order).executions_count == 1
    with pytest.raises(ValidationError):
        services.order_retry(order=reload(order))


def test_run_now_is_an_extra_counted_execution_and_respects_max() -> None:
    order = recurring(max_executions=2, schedule_time=whole_second(3600))
    services.order_run_now(order=order)
    run_until(lambda: len([e for e in executions(order) if e.status == "succeeded"]) == 1, timeout=10)
    assert reload(order).status == "scheduled"
    assert reload(order).next_run_at == order.schedule_time  # the grid did not move
    services.order_run_now(order=reload(order))
    run_until(lambda: reload(order).status == "completed", timeout=10)
    with pytest.raises(ValidationError):
        services.order_run_now(order=reload(order))
    assert reload(order).executions_count == 2
    assert jobqueue.scheduled_count() == 0


# --- repair -------------------------------------------------------------------------------------------


def test_flushed_redis_is_rebuilt_by_reconcile() -> None:
    user = make_user()
    orders = [create(user, schedule_time=whole_second(2)) for _ in range(3)]
    orders.append(recurring(user, max_executions=2))
    jobqueue.connection().flushdb()
    assert jobqueue.live_job_ids([reload(o).job_id for o in orders]) == set()
    report = repair.reconcile()
    assert report.scheduled == 4
    assert jobqueue.live_job_ids([reload(o).job_id for o in orders]) == {reload(o).job_id for o in orders}
    run_until(lambda: all(reload(o).status == "completed" for o in orders), timeout=20)
    assert [len(ran(o)) for o in orders] == [1, 1, 1, 2]
    # A second reconcile finds nothing to do.
    again = repair.reconcile()
    assert (again.scheduled, again.requeued_executions) == (0, 0)


def test_reconcile_removes_jobs_of_deleted_orders() -> None:
    order = create(schedule_time=whole_second(60))
    job_id = order.job_id
    Order.objects.filter(pk=order.pk).delete()  # gone behind the service's back
    report = repair.reconcile()
    assert report.removed_orphans == 1
    assert job_id not in jobqueue.all_order_job_ids()


def test_abandoned_run_is_retried(settings: Any) -> None:
    order = create(schedule_time=whole_second(1))
    time.sleep(1.1)
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=1)
    assert taken is not None  # a worker took it ... and died before finishing
    Execution.objects.filter(pk=taken.execution_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert repair.recover_abandoned() == 1
    run_until(lambda: reload(order).status == "completed", timeout=15)
    (run,) = executions(order)
    assert run.attempts == 2 and run.status == "succeeded"
    assert "WorkerLost" in run.attempt_history[0]["error"]


# --- misfire policies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy,expected_runs,expected_skipped",
    [("run_once", 2, 4), ("skip", 1, 5), ("run_all", 6, 0)],
)
def test_misfire_policy_after_downtime(policy: str, expected_runs: int, expected_skipped: int) -> None:
    start = whole_second(1)
    order = recurring(repeat_interval=60, max_executions=20, misfire_policy=policy, schedule_time=start)
    run_until(lambda: reload(order).executions_count == 1, timeout=10)
    # Scheduler and workers were down while slots 2..6 (t+60 ... t+300) fell due; slot 7 is ahead.
    with time_machine.travel(start + timedelta(seconds=305), tick=True):
        for _ in range(10):
            tick()
        runs, rows = ran(order), executions(order)
        skipped = [e for e in rows if e.status == "skipped"]
        assert len(runs) == expected_runs
        assert len(skipped) == expected_skipped
        assert reload(order).executions_count == expected_runs
        assert reload(order).next_run_at == start + timedelta(seconds=360)
        if policy == "run_once":
            assert [e.grid_index for e in skipped] == [3, 4, 5, 6]
        if policy == "run_all":
            assert [r.grid_index for r in runs] == [1, 2, 3, 4, 5, 6]


def test_owner_is_notified_in_app_and_by_email_when_an_order_completes(mailoutbox: list[Any]) -> None:
    user = make_user("owner@example.com")
    order = create(user, order_name="Quarterly rebalance", schedule_time=whole_second(1))
    run_until(lambda: reload(order).status == "completed", timeout=15)
    (note,) = Notification.objects.filter(user=user)
    assert note.kind == "completed" and "Quarterly rebalance" in note.message
    assert [m.to for m in mailoutbox] == [["owner@example.com"]]
    assert "Quarterly rebalance" in mailoutbox[0].subject


def test_reconcile_orders_command_reports_what_it_did() -> None:
    from io import StringIO

    from django.core.management import call_command

    create(schedule_time=whole_second(60))
    jobqueue.connection().flushdb()
    out = StringIO()
    call_command("reconcile_orders", stdout=out)
    assert "scheduled 1 missing jobs" in out.getvalue()


def test_redis_is_written_only_after_the_database_commits() -> None:
    from django.db import transaction

    user = make_user()

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        services.order_create(
            user=user, definition=services.OrderDefinition(order_name="rolled back", schedule_time=whole_second(5))
        )
        assert jobqueue.scheduled_count() == 0  # nothing in Redis while the transaction is open
        raise Abort
    assert Order.objects.count() == 0
    assert jobqueue.scheduled_count() == 0 and jobqueue.all_order_job_ids() == set()


def test_reconcile_rebuilds_thousands_of_orders_in_batches() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = make_user()
    start = whole_second(3600)
    Order.objects.bulk_create(
        Order(
            user=user,
            order_name=f"bulk {i}",
            schedule_time=start + timedelta(seconds=i),
            next_run_at=start,
            execution_limit=1,
        )
        for i in range(3000)
    )
    with CaptureQueriesContext(connection) as queries:
        report = repair.reconcile()
    assert report.scheduled == 3000
    assert jobqueue.scheduled_count() == 3000
    jobs = list(Order.objects.values_list("job_id", flat=True))
    assert jobqueue.live_job_ids(jobs) == set(jobs)
    # Batched: a few statements per 1,000 orders, not several per order.
    assert len(queries) < 60, len(queries)
    again = repair.reconcile()
    assert (again.scheduled, again.removed_orphans) == (0, 0)


def test_changing_only_the_zone_of_a_one_time_order_that_ran_does_not_run_it_again() -> None:
    order = create(schedule_time=whole_second(1))
    run_until(lambda: reload(order).status == "completed", timeout=15)
    services.order_update(order=reload(order), changes={"time_zone": "Asia/Tokyo"})
    settle(2)
    assert reload(order).status == "completed"
    assert len(ran(order)) == 1


def test_changing_only_max_executions_keeps_the_pending_slot_and_its_job() -> None:
    order = recurring(repeat_interval=1, repeat_unit="hours", max_executions=5, schedule_time=whole_second(1))
    run_until(lambda: reload(order).executions_count == 1, timeout=10)
    before = reload(order)
    after = services.order_update(order=before, changes={"max_executions": 3})
    assert (after.job_id, after.next_grid_index, after.next_run_at) == (
        before.job_id,
        before.next_grid_index,
        before.next_run_at,
    )
    assert jobqueue.live_job_ids([after.job_id]) == {after.job_id}
    # Lowered to what it already ran: it completes; raised again: it carries on from the same slot.
    done = services.order_update(order=after, changes={"max_executions": 1})
    assert done.status == "completed" and jobqueue.scheduled_count() == 0
    revived = services.order_update(order=done, changes={"max_executions": 2})
    assert revived.status == "scheduled" and revived.next_grid_index == before.next_grid_index
    assert jobqueue.live_job_ids([revived.job_id]) == {revived.job_id}


def test_only_one_scheduler_reconciles_per_period() -> None:
    first = jobqueue.acquire_reconcile_lease(ttl=30)
    assert first is not None
    assert jobqueue.acquire_reconcile_lease(ttl=30) is None  # a second scheduler stands by
    jobqueue.release_reconcile_lease("not-the-owner")
    assert jobqueue.acquire_reconcile_lease(ttl=30) is None
    jobqueue.release_reconcile_lease(first)  # a failed pass gives it back at once
    assert jobqueue.acquire_reconcile_lease(ttl=30) is not None
