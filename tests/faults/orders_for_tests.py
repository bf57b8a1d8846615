"""Small factories for fault scenarios: orders are created through the real services (so their jobs
are placed in Redis after commit exactly as an API call would) unless a scenario needs bulk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from orders import services
from orders.models import Order


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
