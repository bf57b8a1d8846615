"""The order's JSON shape, built by hand for the hot read paths.

OrderSerializer (DRF) produces the same output and stays the documented schema; building it through
DRF's field machinery costs about 45 µs per order, a page of 50 more than the rest of the request.
Here an order is a row of ORDER_ROW_COLUMNS (orders.selectors.order_page_for_user, no model
instance) or an Order instance, and the dict is built directly. tests/test_order_page.py pins the output to the
serializer's, field by field.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, tzinfo
from typing import Any

from orders.models import Order
from orders.schedule import is_valid_time_zone, zone
from orders.selectors import ORDER_ROW_COLUMNS


def _utc_if_utc(tz: tzinfo) -> tzinfo:
    # Times come from the database in datetime.UTC; converting to that same object is free
    # (astimezone returns self), converting to ZoneInfo("UTC") is not, and the text is the same.
    return UTC if getattr(tz, "key", None) == "UTC" else tz


class _Zones:
    """The order's zone for its times (UTC when the stored name is unknown), looked up once per name."""

    def __init__(self) -> None:
        self._cache: dict[str, tzinfo] = {}

    def __call__(self, name: str) -> tzinfo:
        tz = self._cache.get(name)
        if tz is None:
            tz = _utc_if_utc(zone(name)) if is_valid_time_zone(name) else UTC
            self._cache[name] = tz
        return tz


def order_values(order: Order) -> tuple[Any, ...]:
    """An Order instance as the row ORDER_ROW_COLUMNS would read."""
    return tuple(getattr(order, column) for column in ORDER_ROW_COLUMNS)


def orders_as_json(rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Rows of ORDER_ROW_COLUMNS -> the API's order dicts (the same as OrderSerializer(many=True).data)."""
    zones = _Zones()
    out = []
    for (
        order_id,
        user_id,
        order_name,
        schedule_time,
        status,
        job_id,
        is_recurring,
        repeat_interval,
        repeat_unit,
        max_executions,
        executions_count,
        execution_limit,
        time_zone,
        misfire_policy,
        next_run_at,
        last_run_at,
        last_result,
        created_at,
        updated_at,
    ) in rows:
        tz = zones(time_zone)
        out.append(
            {
                "order_id": order_id,
                "user_id": user_id,
                "order_name": order_name,
                "schedule_time": schedule_time.astimezone(tz).isoformat() if schedule_time is not None else None,
                "status": status,
                "job_id": job_id,
                "is_recurring": bool(is_recurring),
                "repeat_interval": repeat_interval,
                "repeat_unit": repeat_unit,
                "max_executions": max_executions,
                "executions_count": executions_count,
                # Order.executions_remaining, on the row.
                "executions_remaining": (
                    None if execution_limit is None else max(execution_limit - executions_count, 0)
                ),
                "time_zone": time_zone,
                "misfire_policy": misfire_policy,
                "next_run_at": next_run_at.astimezone(tz).isoformat() if next_run_at is not None else None,
                "last_run_at": last_run_at.astimezone(tz).isoformat() if last_run_at is not None else None,
                "last_result": last_result,
                "created_at": created_at.astimezone(tz).isoformat() if created_at is not None else None,
                "updated_at": updated_at.astimezone(tz).isoformat() if updated_at is not None else None,
            }
        )
    return out


def order_as_json(order: Order) -> dict[str, Any]:
    return orders_as_json([order_values(order)])[0]
