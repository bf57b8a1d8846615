"""Small factories for fault scenarios: orders are created through the real services (so their jobs
are placed in Redis after commit exactly as an API call would) unless a scenario needs bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orders import jobqueue, services
from orders.models import Order, OrderStatus


def at_second(seconds_from_now: float) -> datetime:
    """A whole-second instant about `seconds_from_now` ahead (rq-scheduler stores whole seconds)."""
    return (datetime.now(UTC) + timedelta(seconds=seconds_from_now)).replace(microsecond=0)


def one_time(user: Any, name: str, at: datetime) -> Order:
    return services.order_create(user=user, definition=services.OrderDefinition(order_name=name, schedule_time=at))


def recurring(
    user: Any, name: str, start: datetime, *, every: int, max_executions: int | None, misfire: str = "run_once"
) -> Order:
    return services.order_create(
        user=user,
        definition=services.OrderDefinition(
            order_name=name,
            schedule_time=start,
            is_recurring=True,
            repeat_interval=every,
            repeat_unit="seconds",
            max_executions=max_executions,
            misfire_policy=misfire,
        ),
    )


def bulk_one_time_orders(owner: Any, count: int, due: datetime) -> list[int]:
    """Insert `count` one-time orders due at `due` and place their jobs, as order_create would, but
    in bulk: creating 5,000 through the service takes longer than the scenario itself."""
    rows = Order.objects.bulk_create(
        [
            Order(
                user=owner,
                order_name=f"bulk {i}",
                schedule_time=due,
                status=OrderStatus.SCHEDULED,
                execution_limit=1,
                next_grid_index=1,
                next_run_at=due,
            )
            for i in range(count)
        ],
        batch_size=1000,
    )
    for order in rows:
        order.job_id = jobqueue.new_job_id(order.pk, "v1-k1")
    Order.objects.bulk_update(rows, ["job_id"], batch_size=1000)
    for order in rows:
        jobqueue.schedule_occurrence(jobqueue.OccurrenceJob(order.job_id, order.pk, 1, 1, due))
    return [o.pk for o in rows]
