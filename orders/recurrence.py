"""Pure time arithmetic for order schedules: no I/O, no Django models, so it can be tested exhaustively.

A Grid is one order's schedule; its kind is one of
- once: occurrence 1 is the anchor (schedule_time);
- interval: occurrence k (1-based) is due at anchor + (k-1) x interval, computed from the anchor, never
  from when the previous run happened, so there is no drift. seconds / minutes / hours are elapsed time
  (DST changes do not matter); days / weeks keep the anchor's wall-clock time in the order's time zone;
- monthly: every N months on the anchor's day (the last day of shorter months) at its wall time;
- cron: occurrence k is the k-th cron match at or after the anchor, in the order's zone.
The calendar kinds are computed in orders/calendar_rules.py. One DST rule for every kind (also in README
"Schedule semantics"): a wall time that does not exist (spring-forward gap) runs later by the gap
(02:30 -> 03:30); one that occurs twice (fall-back) runs once, at the first of the two instants; two
cron matches that land on the same instant run once.
With end_at, no occurrence is after it: occurrence_due raises ScheduleOverflow for those, as it does
beyond the year 9000, and every caller treats that as "the grid is done".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from orders.calendar_rules import (
    MAX_INSTANT,
    CronError,
    Cursor,
    ScheduleOverflow,
    cron_schedule,
    describe_cron,
    describe_interval,
    describe_once,
    monthly_first_index_due_after,
    monthly_occurrence_due,
    zone,
)

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600}
CALENDAR_UNIT_DAYS = {"days": 1, "weeks": 7}
# The shortest month: the nominal length of "every N months" when comparing with a minimum interval.
MONTH_DAYS = 28

ONCE, INTERVAL, MONTHLY, CRON = "once", "interval", "monthly", "cron"


@dataclass(frozen=True)
class Grid:
    anchor: datetime  # aware
    time_zone: str
    interval: int | None = None
    unit: str | None = None
    cron: str | None = None
    end_at: datetime | None = None  # aware; no occurrence after it
    # A known occurrence of this grid, (index, due): the order's next_grid_index and next_run_at. With
    # it a cron grid's next occurrence is one step from there instead of k steps from the anchor. It
    # only saves work: an answer never depends on it.
    cursor: tuple[int, datetime] | None = field(default=None, compare=False)

    @classmethod
    def of(
        cls,
        anchor: datetime,
        time_zone: str,
        *,
        is_recurring: bool,
        interval: int | None = None,
        unit: str | None = None,
        cron: str | None = None,
        end_at: datetime | None = None,
        cursor: tuple[int, datetime] | None = None,
    ) -> Grid:
        """The grid of an order's stored fields (a cron expression, when there is one, is the schedule)."""
        if not is_recurring:
            return cls(anchor, time_zone)
        if cron is not None:
            return cls(anchor, time_zone, cron=cron, end_at=end_at, cursor=cursor)
        return cls(anchor, time_zone, interval, unit, end_at=end_at, cursor=cursor)

    @property
    def kind(self) -> str:
        if self.cron is not None:
            return CRON
        if self.interval is None or self.unit is None:
            return ONCE
        return MONTHLY if self.unit == "months" else INTERVAL

    @property
    def recurring(self) -> bool:
        return self.kind != ONCE

    def _cursor(self) -> Cursor | None:
        return Cursor(*self.cursor) if self.cursor is not None else None


def interval_seconds(interval: int, unit: str) -> int:
    """Nominal length of one interval in seconds (days/weeks counted as 24 h / 7 x 24 h, months as 28 days)."""
    if unit in UNIT_SECONDS:
        return interval * UNIT_SECONDS[unit]
    if unit == "months":
        return interval * MONTH_DAYS * 86400
    return interval * CALENDAR_UNIT_DAYS[unit] * 86400


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach `tz` to a naive wall time with the documented gap/fold rule, returning aware UTC."""
    # fold=0 picks the first instant of a repeated wall time, and for a missing wall time it
    # uses the pre-transition offset, which lands after the gap by exactly the gap's length.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _due(grid: Grid, k: int) -> datetime:
    """Occurrence k, ignoring end_at."""
    anchor = grid.anchor.astimezone(UTC)
    kind = grid.kind
    if kind == CRON:
        assert grid.cron is not None
        try:
            return cron_schedule(grid.cron, grid.time_zone).occurrence_due(anchor, k, grid._cursor())
        except CronError as exc:  # validated on the way in; an expression that stopped parsing ends its grid
            raise ScheduleOverflow(str(exc)) from exc
    if kind == ONCE or k == 1:
        return anchor
    assert grid.interval is not None and grid.unit is not None
    if kind == MONTHLY:
        return monthly_occurrence_due(anchor, grid.time_zone, grid.interval, k)
    steps = k - 1
    try:
        if grid.unit in UNIT_SECONDS:
            due = anchor + timedelta(seconds=steps * grid.interval * UNIT_SECONDS[grid.unit])
        else:
            tz = zone(grid.time_zone)
            wall = anchor.astimezone(tz).replace(tzinfo=None)
            due = localize(wall + timedelta(days=steps * grid.interval * CALENDAR_UNIT_DAYS[grid.unit]), tz)
    except OverflowError as exc:
        raise ScheduleOverflow("the occurrence lies beyond the year 9000") from exc
    if due >= MAX_INSTANT:
        raise ScheduleOverflow("the occurrence lies beyond the year 9000")
    return due


def occurrence_due(grid: Grid, k: int) -> datetime:
    """UTC instant at which occurrence k (1-based) of the grid is due (ScheduleOverflow: there is none)."""
    if k < 1:
        raise ValueError("occurrences are numbered from 1")
    due = _due(grid, k)
    if grid.end_at is not None and due > grid.end_at:
        raise ScheduleOverflow("the occurrence lies after end_at")
    return due


def first_index_due_after(grid: Grid, moment: datetime, from_index: int = 1) -> int:
    """Smallest k >= from_index whose due time is strictly after `moment` (past the grid's last
    occurrence when end_at comes first: occurrence_due of it raises ScheduleOverflow)."""
    if not grid.recurring:
        return from_index
    if grid.end_at is not None:
        moment = min(moment, grid.end_at)
    kind = grid.kind
    anchor = grid.anchor.astimezone(UTC)
    assert grid.interval is not None or grid.cron is not None
    if kind == CRON:
        assert grid.cron is not None
        try:
            return cron_schedule(grid.cron, grid.time_zone).first_index_due_after(
                anchor, moment, from_index, grid._cursor()
            )
        except CronError as exc:
            raise ScheduleOverflow(str(exc)) from exc
    assert grid.interval is not None and grid.unit is not None
    if kind == MONTHLY:
        return monthly_first_index_due_after(anchor, grid.time_zone, grid.interval, moment, from_index)
    elapsed = (moment.astimezone(UTC) - anchor).total_seconds()
    # Estimate from the nominal length, then correct by stepping: calendar units can be off by an
    # hour either way across DST, which moves the answer by at most one step.
    k = max(from_index, math.floor(elapsed / interval_seconds(grid.interval, grid.unit)) + 1)
    while k > from_index and _due(grid, k - 1) > moment:
        k -= 1
    while _due(grid, k) <= moment:
        k += 1
    return k


def first_index_due_at_or_after(grid: Grid, moment: datetime, from_index: int = 1) -> int:
    """Smallest k >= from_index whose due time is at or after `moment` (due times are whole
    microseconds, so "after one microsecond earlier" is "at or after")."""
    return first_index_due_after(grid, moment - timedelta(microseconds=1), from_index)


def upcoming(grid: Grid, from_index: int, count: int, limit_index: int | None = None) -> list[datetime]:
    """Due times of occurrences from_index, from_index+1, ... (at most `count`, none past limit_index
    or end_at)."""
    if limit_index is not None:
        count = min(count, limit_index - from_index + 1)
    if count < 1:
        return []
    if grid.kind == CRON:
        assert grid.cron is not None
        try:
            runs = cron_schedule(grid.cron, grid.time_zone).upcoming(
                grid.anchor.astimezone(UTC), from_index, count, grid._cursor()
            )
        except CronError:
            return []
        return [t for t in runs if grid.end_at is None or t <= grid.end_at]
    result: list[datetime] = []
    k = from_index
    while len(result) < count:
        try:
            result.append(occurrence_due(grid, k))
        except ScheduleOverflow:
            break
        if not grid.recurring:
            break
        k += 1
    return result


def describe(grid: Grid) -> str:
    """The schedule in plain English: 'At 09:30, Monday through Friday (Europe/Berlin)'."""
    kind = grid.kind
    if kind == CRON:
        assert grid.cron is not None
        return describe_cron(grid.cron, grid.time_zone)
    if kind == ONCE:
        return describe_once(grid.anchor, grid.time_zone)
    assert grid.interval is not None and grid.unit is not None
    return describe_interval(grid.interval, grid.unit, grid.anchor, grid.time_zone)


def is_misfire(grid: Grid, k: int, now: datetime, grace_seconds: float) -> bool:
    """Occurrence k counts as missed when the one after it is already due (plus a grace).

    A run that is merely late (less than an interval) is not a misfire: it simply runs.
    """
    if not grid.recurring:
        return False
    try:
        following = occurrence_due(grid, k + 1)
    except ScheduleOverflow:
        return False
    return now >= following + timedelta(seconds=grace_seconds)


def resolve_wall_time(value: datetime, time_zone: str) -> datetime:
    """A naive date-time typed by a person is read in their order's time zone (same gap/fold rule)."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    try:
        return localize(value, zone(time_zone))
    except OverflowError as exc:
        raise ScheduleOverflow("the date-time is out of range") from exc
