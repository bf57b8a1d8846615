"""The calendar scenario: what a cron order's next occurrence costs, and reconcile of many cron orders.

Orders are seeded in bulk as the engine leaves them: each with an anchor in the past, its cursor
(next_grid_index, next_run_at) at the first occurrence still ahead, and no job. Anchors differ from
order to order (each is a different grid, so nothing is shared between them), in a mix of expressions
and zones with unusual clock changes.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from bench.stack import ROOT
from bench.stats import percentile

# (expression, zone): every few minutes to once a month, in zones with 1-hour, 30-minute and 45-minute rules.
CRON_MIX = [
    ("*/5 * * * *", "Europe/Berlin"),
    ("*/15 8-18 * * 1-5", "America/New_York"),
    ("0 * * * *", "Australia/Lord_Howe"),
    ("30 9 * * 1-5", "Europe/Berlin"),
    ("45 2 * * *", "Asia/Kathmandu"),
    ("0 0 L * *", "Pacific/Apia"),
    ("0 12 * * 5L", "America/New_York"),
    ("10,50 * * * *", "UTC"),
]
# How far back the anchors lie: the cursor is that many days of occurrences from the anchor.
ANCHOR_DAYS_BACK = 60


def _mix_grids(count: int, now: datetime) -> list[tuple[str, str, datetime, int, datetime]]:
    """`count` (expression, zone, anchor, k, due) tuples, no two with the same anchor: occurrence k of
    the grid at `anchor` is the first one after `now`, computed by the product itself (one count per
    mix entry). The j-th occurrence after the base anchor, taken as the anchor, makes the same due time
    occurrence k - j; an anchor moved a few seconds earlier than an occurrence (less than the gap to
    the one before it) keeps every index."""
    from orders.calendar_rules import cron_schedule

    per_entry = -(-count // len(CRON_MIX))
    result = []
    for expression, zone in CRON_MIX:
        schedule = cron_schedule(expression, zone)
        base = schedule.next_at_or_after(now - timedelta(days=ANCHOR_DAYS_BACK))
        k = schedule.first_index_due_after(base, now)
        due = schedule.occurrence_due(base, k)
        anchors = schedule.upcoming(base, 1, min(per_entry, k - 1))
        for i in range(per_entry):
            j, earlier = i % len(anchors), i // len(anchors)
            anchor = anchors[j] - timedelta(seconds=earlier)
            if schedule.next_at_or_after(anchor) != anchors[j]:
                raise AssertionError(f"{expression}: moved the anchor past an occurrence")
            result.append((expression, zone, anchor, k - j, due))
    return result[:count]


def seed_cron_orders(users: list[Any], count: int, per_user: int) -> list[int]:
    from orders.models import Order, OrderStatus

    # Cursors at the first occurrence two hours from now: however slow the machine, every job is still
    # ahead when reconcile places it (a past one would go to the queue instead of the schedule).
    now = timezone.now() + timedelta(hours=2)
    rows = []
    for i, (expression, zone, anchor, k, due) in enumerate(_mix_grids(count, now)):
        rows.append(
            Order(
                user=users[i // per_user],
                order_name=f"cron {i}",
                schedule_time=anchor,
                time_zone=zone,
                is_recurring=True,
                cron=expression,
                status=OrderStatus.SCHEDULED,
                next_grid_index=k,
                next_run_at=due,
                occurrence_seq=k - 1,
                executions_count=k - 1,
            )
        )
    Order.objects.bulk_create(rows, batch_size=2000)
    return list(Order.objects.filter(is_recurring=True).exclude(cron=None).values_list("pk", flat=True))


def _costs(wall: list[float], cpu: list[float]) -> dict[str, float]:
    # Wall time on the shared machine includes waiting for a core; the CPU time of this thread is what
    # the computation itself costs.
    return {
        "p50_us": percentile(wall, 50) * 1e6,
        "p99_us": percentile(wall, 99) * 1e6,
        "max_us": max(wall) * 1e6,
        "cpu_p50_us": percentile(cpu, 50) * 1e6,
        "cpu_p99_us": percentile(cpu, 99) * 1e6,
        "samples": len(wall),
    }


def _timed(call: Any, wall: list[float], cpu: list[float]) -> None:
    began, began_cpu = time.perf_counter(), time.thread_time()
    call()
    cpu.append(time.thread_time() - began_cpu)
    wall.append(time.perf_counter() - began)


def next_occurrence_cost(order_ids: list[int], samples: int) -> dict[str, Any]:
    """The engine's question when it takes an occurrence: the one after it (is_misfire, then the next
    job), from the order's own cursor; and, for comparison, occurrence k counted from the anchor."""
    from orders.calendar_rules import forget_answers
    from orders.models import Order
    from orders.recurrence import Grid, occurrence_due

    step = max(1, len(order_ids) // samples)
    orders = list(Order.objects.filter(pk__in=order_ids[::step][:samples]))
    forget_answers()
    wall: list[float] = []
    cpu: list[float] = []
    for order in orders:
        grid, k = order.grid, order.next_grid_index + 1
        _timed(lambda grid=grid, k=k: occurrence_due(grid, k), wall, cpu)
    with_cursor = _costs(wall, cpu)
    forget_answers()
    wall, cpu = [], []
    for order in orders[: max(1, len(orders) // 10)]:
        grid = Grid.of(order.schedule_time, order.time_zone, is_recurring=True, cron=order.cron)
        k = order.next_grid_index
        _timed(lambda grid=grid, k=k: occurrence_due(grid, k), wall, cpu)
    return {
        "with_cursor": with_cursor,
        "from_anchor": {**_costs(wall, cpu), "anchor_days_back": ANCHOR_DAYS_BACK},
    }


def _jobs_at_due_time(order_ids: list[int]) -> str:
    """'k/n': how many of these orders have their job in rq-scheduler's set at next_run_at (the exact
    instant, as orders/jobqueue.py scores it)."""
    from orders import jobqueue
    from orders.models import Order

    conn = jobqueue.connection()
    rows = list(Order.objects.filter(pk__in=order_ids).values_list("job_id", "next_run_at"))
    right = 0
    for job_id, due in rows:
        score = conn.zscore("rq:scheduler:scheduled_jobs", job_id)
        if due is None:
            continue
        right += score is not None and abs(score - due.timestamp()) < 1e-6
    return f"{right}/{len(rows)}"


def scenario_calendar(ctx: Any) -> dict[str, Any]:
    from django.conf import settings

    from bench import data
    from orders import jobqueue

    total = ctx.profile.calendar_orders
    data.reset_orders()
    per_user = settings.ORDER_MAX_ACTIVE_PER_USER
    users = data.bench_users(-(-total // per_user))
    began = time.monotonic()
    order_ids = seed_cron_orders(users, total, per_user)
    result: dict[str, Any] = {"orders": len(order_ids), "mix": [f"{e} ({z})" for e, z in CRON_MIX]}
    result["seed_seconds"] = time.monotonic() - began
    result["next_occurrence"] = next_occurrence_cost(order_ids, ctx.profile.calendar_cost_samples)
    data.clear_queue_state()
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "manage.py", "reconcile_orders"],
        cwd=ROOT,
        env=ctx.env,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    result["reconcile_seconds"] = time.monotonic() - began
    result["reconcile_output"] = out.stdout.strip()
    result["scheduled_jobs"] = jobqueue.scheduled_count()
    result["jobs_at_their_due_time"] = _jobs_at_due_time(order_ids[:: max(1, len(order_ids) // 200)])
    cost = result["next_occurrence"]["with_cursor"]
    ctx.log(
        f"calendar: next occurrence p99 {cost['cpu_p99_us']:.0f} us CPU ({cost['p99_us']:.0f} us wall); "
        f"reconcile of {len(order_ids)} cron orders {result['reconcile_seconds']:.1f}s"
    )
    data.reset_orders()
    return result
