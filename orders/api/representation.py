"""The order's JSON shape, built by hand for the hot read paths.

OrderSerializer (DRF) produces the same output and stays the documented schema; building it through
DRF's field machinery costs about 45 µs per order, a page of 50 more than the rest of the request.
Here an order is a row of ORDER_ROW_COLUMNS (orders.selectors.order_page_for_user, no model
instance) or an Order instance, and the dict is built directly. tests/test_order_page.py pins the output to the
serializer's, field by field.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, tzinfo
from typing import Any

from django.db import models

from common.timezones import is_valid_time_zone
from orders.models import Order
from orders.recurrence import Grid, describe, zone
from orders.selectors import ORDER_ROW_COLUMNS
from orders.sql import datetime_from_db_text, utc_isoformat_from_db_text


def _utc_if_utc(tz: tzinfo) -> tzinfo:
    # Times come from the database in datetime.UTC; converting to that same object is free
    # (astimezone returns self), converting to ZoneInfo("UTC") is not, and the text is the same.
    return UTC if getattr(tz, "key", None) == "UTC" else tz


def _order_zone(name: str) -> tzinfo:
    """The order's zone for its times (UTC when the stored name is unknown)."""
    return _utc_if_utc(zone(name)) if is_valid_time_zone(name) else UTC


# The JSON key of each column of ORDER_ROW_COLUMNS that is not named as it is stored: the order's id,
# and the executions it has left (Order.executions_remaining, from execution_limit on the row).
_KEY_OF_COLUMN = {"id": "order_id", "execution_limit": "executions_remaining"}
# The order's JSON keys, in order: OrderSerializer's fields are these. The last is derived: the
# schedule in words (Order.schedule_description).
ORDER_JSON_FIELDS = (*(_KEY_OF_COLUMN.get(column, column) for column in ORDER_ROW_COLUMNS), "schedule_description")

_POSITION = {column: i for i, column in enumerate(ORDER_ROW_COLUMNS)}
_TIME_COLUMNS = [
    column for column in ORDER_ROW_COLUMNS if isinstance(Order._meta.get_field(column), models.DateTimeField)
]
# Every time of an order, created_at and updated_at included, carries the order's offset.
_ORDER_TIMES = tuple((_POSITION[c], _KEY_OF_COLUMN.get(c, c)) for c in _TIME_COLUMNS)
_BOOLEANS = tuple(
    (_POSITION[c], _KEY_OF_COLUMN.get(c, c))
    for c in ORDER_ROW_COLUMNS
    if isinstance(Order._meta.get_field(c), models.BooleanField)
)
_TIME_ZONE, _LIMIT, _COUNT = _POSITION["time_zone"], _POSITION["execution_limit"], _POSITION["executions_count"]
_grid_of = operator.itemgetter(
    *(_POSITION[c] for c in ("schedule_time", "is_recurring", "repeat_interval", "repeat_unit", "cron"))
)
_ROW_KEYS = ORDER_JSON_FIELDS[:-1]


@functools.lru_cache(maxsize=8192)
def _describe(
    anchor: datetime | str,
    anchor_zone: tzinfo | None,
    time_zone: str,
    is_recurring: bool,
    interval: int | None,
    unit: str | None,
    cron: str | None,
) -> str:
    # describe() is a pure function of the definition, and a client reads the same page again and
    # again: remembered, the words cost a dictionary look-up instead of a third of the page's JSON.
    # A page's anchor is the database's text, keyed with the zone it is read in; a miss reads it as
    # the ORM would, so the Grid is built from the same datetime either way.
    if isinstance(anchor, str):
        anchor = datetime_from_db_text(anchor, anchor_zone)
    grid = Grid.of(anchor, time_zone, is_recurring=is_recurring, interval=interval, unit=unit, cron=cron)
    return describe(grid)


def order_values(order: Order) -> tuple[Any, ...]:
    """An Order instance as the row ORDER_ROW_COLUMNS would read."""
    return tuple(getattr(order, column) for column in ORDER_ROW_COLUMNS)


def orders_as_json(rows: Iterable[Sequence[Any]], *, db_text_zone: tzinfo | None = None) -> list[dict[str, Any]]:
    """Rows of ORDER_ROW_COLUMNS -> the API's order dicts (the same as OrderSerializer(many=True).data).

    The times are datetimes, or with `db_text_zone` the database's text in that zone
    (order_page_for_user(times_as_text=True), read in connections[using].timezone). A UTC order's
    text from a UTC connection becomes its ISO text by string operations: a page's worth of
    datetime parsing and isoformat was a third of the list's CPU. Any other order's is read and
    converted exactly as the ORM's datetime would be."""
    zones: dict[str, tzinfo] = {}
    utc_text = db_text_zone is UTC
    out = []
    for row in rows:
        name = row[_TIME_ZONE]
        tz = zones.get(name)
        if tz is None:
            tz = zones[name] = _order_zone(name)
        # Every key but the last, in order; the times, booleans and executions left are replaced below.
        item = dict(zip(_ROW_KEYS, row, strict=True))
        if db_text_zone is None:
            for i, key in _ORDER_TIMES:
                value = row[i]
                if value is not None:
                    item[key] = value.astimezone(tz).isoformat()
        elif utc_text and tz is UTC:
            for i, key in _ORDER_TIMES:
                value = row[i]
                if value is not None:
                    item[key] = utc_isoformat_from_db_text(value)
        else:
            for i, key in _ORDER_TIMES:
                value = row[i]
                if value is not None:
                    item[key] = datetime_from_db_text(value, db_text_zone).astimezone(tz).isoformat()
        for i, key in _BOOLEANS:
            item[key] = bool(row[i])
        limit = row[_LIMIT]
        item["executions_remaining"] = None if limit is None else max(limit - row[_COUNT], 0)
        anchor, is_recurring, interval, unit, cron = _grid_of(row)
        item["schedule_description"] = _describe(anchor, db_text_zone, name, bool(is_recurring), interval, unit, cron)
        out.append(item)
    return out


def order_as_json(order: Order) -> dict[str, Any]:
    return orders_as_json([order_values(order)])[0]
