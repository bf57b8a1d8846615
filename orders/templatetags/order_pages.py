"""Display helpers for the order pages: instants on a named wall clock, schedules in words."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import template

from common.timezones import is_valid_time_zone
from orders.models import Order
from orders.recurrence import zone

register = template.Library()


@register.filter
def in_zone(value: datetime | None, time_zone: str) -> str:
    """'2030-01-31 09:00:00 CET': the instant on the wall clock of `time_zone`, its abbreviation named."""
    if value is None:
        return "\u2014"
    tz = zone(time_zone if time_zone and is_valid_time_zone(time_zone) else "UTC")
    local = value.astimezone(tz)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


@register.filter
def schedule_words(order: Order) -> str:
    """'One-time', 'Every 2 hours', or a cron order's schedule in words."""
    if order.is_recurring and order.cron:
        return order.schedule_description
    if not order.is_recurring or not order.repeat_interval or not order.repeat_unit:
        return "One-time"
    unit = order.repeat_unit
    if order.repeat_interval == 1:
        return f"Every {unit.removesuffix('s')}"
    return f"Every {order.repeat_interval} {unit}"


@register.filter
def pretty_json(value: Any) -> str:
    """A payload as indented JSON text (the template escapes it like any other text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
