"""The benchmarks' data: bench users and tokens, resetting orders and the queue, reading back what ran.

Shared by every scenario module (harness, calendar, webhooks), so none of them imports another.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone


def clear_queue_state() -> None:
    """Remove every job, queue and registry of the order queue; keep worker registrations."""
    from orders import jobqueue

    conn = jobqueue.connection()
    patterns = ["rq:job:*", "rq:queue:*", "rq:wip:*", "rq:*registry*", "rq:finished:*", "rq:failed:*"]
    patterns += ["rq:scheduled:*", "rq:deferred:*", "rq:results:*", "rq:executions:*", "rq:canceled:*"]
    keys: list[bytes] = []
    for pattern in patterns:
        keys.extend(conn.scan_iter(match=pattern, count=5000))
    keys.append(b"rq:scheduler:scheduled_jobs")
    for i in range(0, len(keys), 5000):
        conn.delete(*keys[i : i + 5000])


def reset_orders() -> None:
    """Delete every order, execution and notification (raw deletes: 100,000 rows through the ORM
    collector would take minutes), clear the queue state and empty the order log."""
    from orders.models import Execution, Notification, Order

    with connection.cursor() as cursor:
        for model in (Notification, Execution, Order):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")  # noqa: S608 - table names from models
    clear_queue_state()
    settings.ORDER_LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    settings.ORDER_LOG_FILE.write_text("")


def bench_users(count: int) -> list[Any]:
    from accounts.models import User

    users = []
    for i in range(count):
        user, _ = User.objects.get_or_create(email=f"bench{i}@bench.invalid", defaults={"time_zone": "UTC"})
        users.append(user)
    return users


def token_for(user: Any) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def next_whole_second(after: datetime) -> datetime:
    return (after + timedelta(seconds=1)).replace(microsecond=0)


def ts(value: datetime | None) -> float:
    if value is None:
        return math.nan
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def wait_for(predicate: Callable[[], bool], timeout: float, step: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def execution_rows() -> list[dict[str, Any]]:
    from orders.models import Execution

    fields = ("order_id", "grid_index", "scheduled_for", "started_at", "finished_at", "status")
    return [dict(row) for row in Execution.objects.values(*fields)]


def settled_count() -> int:
    from orders.models import Execution

    return Execution.objects.filter(status__in=("succeeded", "failed")).count()


def summary(due: float | None, starts: list[float], ends: list[float], n: int) -> dict[str, Any]:
    ends_sorted = sorted(e for e in ends if not math.isnan(e))
    first_start = min(starts) if starts else math.nan
    done = len(ends_sorted)
    result: dict[str, Any] = {"n": n, "done": done}
    if done:
        span = ends_sorted[-1] - first_start
        result["throughput_per_s"] = done / span if span > 0 else math.nan
        if due is not None:
            result["first_started_s"] = first_start - due
            result["first_done_s"] = ends_sorted[0] - due
            result["half_done_s"] = ends_sorted[max(0, math.ceil(n / 2) - 1)] - due if done >= n / 2 else math.nan
            result["all_done_s"] = ends_sorted[-1] - due if done == n else math.nan
            result["early_starts"] = sum(1 for s in starts if s < due)
    return result


def seed_orders(user: Any, count: int, *, status: str = "scheduled", start: datetime | None = None) -> None:
    """Bulk rows (no jobs): what reconcile or a list page reads."""
    from orders.models import Order

    start = start or timezone.now() + timedelta(days=2)
    rows = []
    for i in range(count):
        due = start + timedelta(seconds=i)
        active = status == "scheduled"
        rows.append(
            Order(
                user=user,
                order_name=f"seeded {i}",
                schedule_time=due,
                status=status,
                execution_limit=1,
                executions_count=0 if active else 1,
                next_run_at=due if active else None,
                last_result="" if active else "succeeded",
            )
        )
    Order.objects.bulk_create(rows, batch_size=2000)
