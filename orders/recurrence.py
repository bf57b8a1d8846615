"""Pure time arithmetic for order schedules: no I/O, no Django models, so it can be tested exhaustively.

Rules (also in README "Schedule semantics"):
- Occurrence k (1-based) of a definition is due at anchor + (k-1) x interval, computed from the anchor,
  never from when the previous run happened, so there is no drift.
- seconds / minutes / hours are elapsed time (DST changes do not matter).
- days / weeks keep the anchor's wall-clock time in the order's time zone. When that wall time does
  not exist (spring-forward gap) the run happens at the same offset it had before the change, i.e. it is
  pushed forward by the length of the gap (02:30 -> 03:30); when it occurs twice (fall-back), the first
  of the two instants is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

UNIT_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600}
CALENDAR_UNIT_DAYS = {"days": 1, "weeks": 7}
# The largest instant we agree to compute; beyond it Python's datetime overflows in some zones.
MAX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


class ScheduleOverflow(ValueError):
    """The requested occurrence lies beyond what can be represented."""


@dataclass(frozen=True)
class Grid:
    anchor: datetime  # aware
    time_zone: str
    interval: int | None = None
    unit: str | None = None

    @property
    def recurring(self) -> bool:
        return self.interval is not None and self.unit is not None


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def interval_seconds(interval: int, unit: str) -> int:
    """Nominal length of one interval in seconds (days/weeks counted as 24 h / 7 x 24 h)."""
    if unit in UNIT_SECONDS:
        return interval * UNIT_SECONDS[unit]
    return interval * CALENDAR_UNIT_DAYS[unit] * 86400


def localize(wall: datetime, tz: ZoneInfo) -> datetime:
    """Attach `tz` to a naive wall time with the documented gap/fold rule, returning aware UTC."""
    # fold=0 picks the first instant of a repeated wall time, and for a missing wall time it
    # uses the pre-transition offset, which lands after the gap by exactly the gap's length.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def occurrence_due(grid: Grid, k: int) -> datetime:
    """UTC instant at which occurrence k (1-based) of the grid is due."""
    if k < 1:
        raise ValueError("occurrences are numbered from 1")
    anchor = grid.anchor.astimezone(UTC)
    if not grid.recurring or k == 1:
        return anchor
    assert grid.interval is not None and grid.unit is not None
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


def first_index_due_after(grid: Grid, moment: datetime, from_index: int = 1) -> int:
    """Smallest k >= from_index whose due time is strictly after `moment`."""
    if not grid.recurring:
        return from_index
    assert grid.interval is not None and grid.unit is not None
    anchor = grid.anchor.astimezone(UTC)
    elapsed = (moment.astimezone(UTC) - anchor).total_seconds()
    # Estimate from the nominal length, then correct by stepping: calendar units can be off by an
    # hour either way across DST, which moves the answer by at most one step.
    k = max(from_index, math.floor(elapsed / interval_seconds(grid.interval, grid.unit)) + 1)
    while k > from_index and occurrence_due(grid, k - 1) > moment:
        k -= 1
    while occurrence_due(grid, k) <= moment:
        k += 1
    return k


def upcoming(grid: Grid, from_index: int, count: int, limit_index: int | None = None) -> list[datetime]:
    """Due times of occurrences from_index, from_index+1, ... (at most `count`, none past limit_index)."""
    result: list[datetime] = []
    k = from_index
    while len(result) < count and (limit_index is None or k <= limit_index):
        try:
            result.append(occurrence_due(grid, k))
        except ScheduleOverflow:
            break
        if not grid.recurring:
            break
        k += 1
    return result


def scheduler_time(due: datetime) -> datetime:
    """The instant to hand to rq-scheduler for a job due at `due`.

    rq-scheduler stores whole seconds (truncating), so a fractional due time would be handed out
    up to a second early: round up instead, never down.
    """
    due = due.astimezone(UTC)
    if due.microsecond:
        due = due.replace(microsecond=0) + timedelta(seconds=1)
    return due


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
