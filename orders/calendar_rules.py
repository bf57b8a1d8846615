"""Calendar schedules in a time zone: every N months, and cron expressions. Pure: no I/O, no Django.

One DST rule for every kind of schedule, the one days and weeks already follow:
- a wall time that does not exist runs later by the gap (02:30 -> 03:30 on a spring-forward night);
- a wall time that occurs twice runs once, at its first instant;
- two matches that land on the same instant run once.
Put exactly: resolve(w) reads the wall time w with fold=0 (its first instant; a missing wall time with
the offset in force before the gap, which lands it after the gap by the gap's length). The instants of a
cron schedule are {resolve(w) : w a wall minute the expression matches}, in increasing order, and
occurrence k is the k-th of them at or after the anchor (the order's schedule_time). Occurrence k of a
monthly schedule is resolve(the anchor's wall time moved by (k-1) x N months, the day clamped to the
month's length), always computed from the anchor, so a 31st anchor is back on the 31st after February.

cronsim (the parser healthchecks uses) reads the expression and says which days match (lists, ranges,
steps, names, L, LW, 5L, 5#2); it is only asked about wall time. The rule above is applied here, because
cronsim's own DST handling is Debian cron's (a job in the gap runs at the first minute after it, and a
wildcard job in a repeated hour runs twice).

Cost. Occurrence k is the k-th instant after the anchor, which is O(k) to find by stepping. The caller
passes a cursor, a (k, instant) pair it stored (the order's next_grid_index and next_run_at), and
recent answers are remembered per schedule, so the engine's next occurrence is one step. Longer jumps
(a pause of years, a catch-up) count whole UTC days arithmetically: O(days), not O(occurrences).

What the day arithmetic relies on about time zones, checked over the whole tz database for 1970-2100:
two transitions of one zone are always more than 50 hours apart (the closest are a week apart), and no
transition moves the clocks by more than 24 hours (Kwajalein in 1993, Pacific/Apia skipping 2011-12-30).
"""

from __future__ import annotations

import bisect
import calendar
import itertools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cron_descriptor import ExpressionDescriptor, Options
from cronsim import CronSim, CronSimError

# The largest instant we agree to compute (as orders/schedule.py): beyond it datetime overflows in some zones.
MAX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)
MAX_EXPRESSION_LENGTH = 200
# The Gregorian calendar, weekdays included, repeats every 400 years: a day pattern that matches no day
# in 400 consecutive years matches none ever.
CALENDAR_CYCLE_DAYS = 146_097
DAY = timedelta(days=1)
MINUTE_US = 60_000_000
MINUTE_DELTA = timedelta(minutes=1)
# Longer than any clock change (24 h), shorter than the time between two changes of one zone (a week).
TRANSITION_MARGIN = timedelta(hours=25)
# A jump over more occurrences than this counts whole days instead of stepping one by one.
STEP_LIMIT = 64
# Years of a zone's future examined for clock changes when checking the minimum interval.
DST_HORIZON_YEARS = 30

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")
FIELD_RANGES = {"minute": (0, 59), "hour": (0, 23), "day-of-month": (1, 31), "month": (1, 12), "day-of-week": (0, 7)}
FIELD_HELP = {
    "minute": "0-59",
    "hour": "0-23",
    "day-of-month": "1-31, L (the last day) or LW (the last weekday)",
    "month": "1-12 or JAN-DEC",
    "day-of-week": "0-7 or SUN-SAT (0 and 7 are Sunday), 5L (the last Friday), 5#2 (the second Friday)",
}
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class ScheduleOverflow(ValueError):
    """The requested occurrence lies beyond what can be represented."""


class CronError(ValueError):
    """A cron expression that cannot be scheduled; the message is meant for the user."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def resolve(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant (aware, UTC) at which the naive wall time `wall` runs in `tz`, by the rule above."""
    # fold=0 picks the first instant of a repeated wall time, and for a missing wall time it uses the
    # pre-transition offset, which lands after the gap by exactly the gap's length.
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _check_range(instant: datetime) -> datetime:
    if instant >= MAX_INSTANT:
        raise ScheduleOverflow("the occurrence lies beyond the year 9000")
    return instant


# --- every N months ---------------------------------------------------------------------------------


def add_months(wall: datetime, months: int) -> datetime:
    """`wall` moved by `months` calendar months, its day clamped to the length of the month it lands in."""
    total = wall.year * 12 + (wall.month - 1) + months
    year, month0 = divmod(total, 12)
    if not 1 <= year <= MAX_INSTANT.year:
        raise ScheduleOverflow("the occurrence lies beyond the year 9000")
    day = min(wall.day, calendar.monthrange(year, month0 + 1)[1])
    return wall.replace(year=year, month=month0 + 1, day=day)


def monthly_occurrence_due(anchor: datetime, time_zone: str, interval: int, k: int) -> datetime:
    """UTC instant of occurrence k (1-based) of "every `interval` months from `anchor`" in the zone."""
    if k < 1:
        raise ValueError("occurrences are numbered from 1")
    if k == 1:
        return anchor.astimezone(UTC)
    tz = zone(time_zone)
    wall = anchor.astimezone(tz).replace(tzinfo=None)
    try:
        return _check_range(resolve(add_months(wall, (k - 1) * interval), tz))
    except OverflowError as exc:
        raise ScheduleOverflow("the occurrence lies beyond the year 9000") from exc


def monthly_first_index_due_after(
    anchor: datetime, time_zone: str, interval: int, moment: datetime, from_index: int = 1
) -> int:
    """Smallest k >= from_index whose occurrence is strictly after `moment` (a few evaluations)."""
    tz = zone(time_zone)
    start = anchor.astimezone(tz)
    now = moment.astimezone(tz)
    months = (now.year - start.year) * 12 + (now.month - start.month)
    # The estimate is off by at most one step (day clamping and DST move a month's slot by days, not
    # months); the loops correct it.
    k = max(from_index, months // interval + 1)
    while k > from_index and monthly_occurrence_due(anchor, time_zone, interval, k - 1) > moment:
        k -= 1
    while monthly_occurrence_due(anchor, time_zone, interval, k) <= moment:
        k += 1
    return k


# --- cron: parsing and validation ---------------------------------------------------------------------


def normalize_cron(expression: str) -> str:
    return " ".join(expression.split())


def _field_problem(name: str, text: str) -> str:
    """Why cronsim refused one field, in words (cronsim itself only says "Bad minute")."""
    low, high = FIELD_RANGES[name]
    for term in text.split(","):
        base, _, step = term.partition("/")
        if step and step.isdigit() and int(step) == 0:
            return f"The {name} field has a step of 0 ({term}), which never moves on: use a step of 1 or more."
        for number in re.findall(r"\d+", base.split("#")[0]):
            if not low <= int(number) <= high:
                return f"The {name} field allows {low}-{high}; {number} is out of range."
    return (
        f"The {name} field {text!r} is not valid: use {FIELD_HELP[name]}, lists (1,15), ranges (1-5) or steps (*/15)."
    )


def parse_cron(expression: object) -> str:
    """The expression, normalised, if cronsim accepts it as a 5-field schedule; CronError otherwise."""
    if not isinstance(expression, str) or not expression.strip():
        raise CronError("Enter a cron expression, such as '30 9 * * 1-5' (09:30 on weekdays).")
    if len(expression) > MAX_EXPRESSION_LENGTH:
        raise CronError(
            f"At most {MAX_EXPRESSION_LENGTH} characters: a cron expression is five short fields "
            "(minute hour day-of-month month day-of-week)."
        )
    text = normalize_cron(expression)
    if text.startswith("@"):
        word = text.split()[0].lower()
        if word in MACROS:
            raise CronError(f"Write {word} as its five fields: {MACROS[word]}.")
        raise CronError(
            f"{text.split()[0]} is not a time of day: a schedule is five fields "
            "(minute hour day-of-month month day-of-week), such as '0 9 * * *'."
        )
    parts = text.split(" ")
    if len(parts) != 5:
        extra = " Seconds are not supported." if len(parts) == 6 else ""
        raise CronError(
            f"A cron expression has 5 fields (minute hour day-of-month month day-of-week); "
            f"this one has {len(parts)}.{extra}"
        )
    for name, field in zip(FIELDS, parts, strict=True):
        for term in field.split(","):
            base, _, step = term.partition("/")
            low, _, high = base.partition("-")
            if step and high and low.upper() == high.upper():
                # cronsim reads "5-5/2" as "5/2" (5 to the end of the range): refuse the surprise.
                raise CronError(f"The {name} field's {term} is a range of one value with a step: write {low}.")
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as exc:
        # cronsim names the field it refused ("Bad day-of-month"); the same message comes for a day that
        # no month of the expression has (30 February), which parses once the month is left open.
        for index, name in enumerate(FIELDS):
            if str(exc) == f"Bad {name}":
                if name == "day-of-month" and _parses(" ".join([*parts[:3], "*", parts[4]])):
                    raise CronError("This schedule never runs: none of its months has that day.") from exc
                raise CronError(_field_problem(name, parts[index])) from exc
        raise CronError(f"Not a valid cron expression: {exc}.") from exc
    return text


def _parses(text: str) -> bool:
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError:
        return False
    return True


def cron_problems(expression: object, *, time_zone: str, start: datetime, min_interval_seconds: float) -> list[str]:
    """What is wrong with scheduling `expression` from `start` in the zone (empty: nothing)."""
    try:
        text = parse_cron(expression)
    except CronError as exc:
        return [str(exc)]
    tz_name = time_zone
    try:
        zone(time_zone)
    except ValueError:
        tz_name = "UTC"  # the zone has its own error; the expression is still checked
    schedule = cron_schedule(text, tz_name)
    try:
        schedule.next_at_or_after(start)
    except CronError as exc:
        return [str(exc)]
    except ScheduleOverflow:
        return ["This schedule never runs before the year 9000."]
    if min_interval_seconds > 60:  # whole-minute runs are never closer than that
        gap, where = schedule.min_gap_seconds(start, min_interval_seconds)
        if gap < min_interval_seconds:
            return [
                f"Two runs of this schedule can be as little as {_seconds_words(gap)} apart{where}; "
                f"the minimum interval is {_seconds_words(min_interval_seconds)}."
            ]
    return []


def _seconds_words(seconds: float) -> str:
    seconds = int(seconds)
    for size, name in ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second")):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {name}" if count == 1 else f"{count} {name}s"
    return f"{seconds} seconds"


@dataclass(frozen=True)
class Cursor:
    """A known occurrence: the `index`-th of the schedule is due at `at`."""

    index: int
    at: datetime


# --- cron: one UTC day at a time ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
    """Occurrences base + times[i] minutes, lo <= i < hi (a stretch of one local date with a fixed offset)."""

    base: datetime  # UTC instant of that local date's midnight (at the stretch's offset)
    times: tuple[int, ...]  # minutes after midnight, sorted
    lo: int
    hi: int

    def count_after(self, moment: datetime) -> int:
        minutes = (moment - self.base) // timedelta(microseconds=1) // MINUTE_US
        return self.hi - max(self.lo, bisect.bisect_right(self.times, minutes, self.lo, self.hi))

    def at(self, i: int) -> datetime:
        return self.base + timedelta(minutes=self.times[self.lo + i])

    def __len__(self) -> int:
        return self.hi - self.lo


class _Day:
    """The occurrences that fall within one UTC day, in increasing order: either a few runs of a fixed
    offset (no clock change near), or the explicit list."""

    __slots__ = ("instants", "runs", "total")

    def __init__(self, runs: list[_Run] | None = None, instants: list[datetime] | None = None) -> None:
        self.runs = runs or []
        self.instants = instants
        self.total = len(instants) if instants is not None else sum(len(r) for r in self.runs)

    def count_after(self, moment: datetime) -> int:
        if self.instants is not None:
            return len(self.instants) - bisect.bisect_right(self.instants, moment)
        return sum(run.count_after(moment) for run in self.runs)

    def nth_after(self, moment: datetime, n: int) -> datetime:
        """The n-th (1-based) occurrence of this day after `moment` (the caller checked there are n)."""
        skip = self.total - self.count_after(moment) + n - 1
        if self.instants is not None:
            return self.instants[skip]
        for run in self.runs:
            if skip < len(run):
                return run.at(skip)
            skip -= len(run)
        raise IndexError(n)


def _floor_day(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


# Recent (index, instant) answers per grid (expression, zone, anchor): the next question about a grid is
# usually the next index. Bounded: a few megabytes however many orders there are.
MAX_REMEMBERED_GRIDS = 4096
_MARKS: OrderedDict[tuple[str, str, datetime], dict[int, datetime]] = OrderedDict()
_MARKS_LOCK = threading.Lock()


class CronSchedule:
    """A valid 5-field expression in a zone. Thread-safe; build it with cron_schedule() (cached)."""

    def __init__(self, expression: str, time_zone: str) -> None:
        self.expression = parse_cron(expression)
        self.time_zone = time_zone
        self.tz = zone(time_zone)
        self._sim = CronSim(self.expression, datetime(2000, 1, 1))
        self.months = frozenset(self._sim.months)
        self.times = tuple(sorted(h * 60 + m for h in self._sim.hours for m in self._sim.minutes))
        self._lock = threading.Lock()
        # Days near a clock change, listed one by one (a few per year); the ones in use are recent.
        self._irregular: OrderedDict[datetime, _Day] = OrderedDict()

    # -- days --

    def matches_day(self, day: date) -> bool:
        return day.month in self.months and self._sim.match_day(day)

    def next_matching_date(self, day: date) -> date | None:
        """The first local date >= `day` the expression matches; None if it matches none, ever."""
        for _ in range(CALENDAR_CYCLE_DAYS + 31):
            if day.month not in self.months:
                # Month after month until one is in the expression.
                day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
                continue
            if self._sim.match_day(day):
                return day
            day += DAY
        return None

    def _offset(self, instant: datetime) -> timedelta:
        offset = instant.astimezone(self.tz).utcoffset()
        assert offset is not None
        return offset

    def day_plan(self, day_start: datetime) -> _Day:
        """The occurrences within the UTC day starting at `day_start` (a UTC midnight)."""
        before = self._offset(day_start - TRANSITION_MARGIN)
        after = self._offset(day_start + TRANSITION_MARGIN)
        if before == after:
            # No clock change within a day of this one (changes are a week apart): every wall minute
            # that maps here exists, maps with this one offset, and nothing from elsewhere lands here.
            return self._regular_day(day_start, before)
        with self._lock:
            cached = self._irregular.get(day_start)
        if cached is None:
            cached = self._irregular_day(day_start, min(before, after), max(before, after))
            with self._lock:
                self._irregular[day_start] = cached
                if len(self._irregular) > 16:
                    self._irregular.popitem(last=False)
        return cached

    def _regular_day(self, day_start: datetime, offset: timedelta) -> _Day:
        local = (day_start + offset).replace(tzinfo=None)
        first_date = local.date()
        midnight = datetime.combine(first_date, time())
        split_us = (local - midnight) // timedelta(microseconds=1)
        split = -(-split_us // MINUTE_US)  # the first whole minute at or after the day's start
        base = day_start - timedelta(microseconds=split_us)
        index = bisect.bisect_left(self.times, split)
        runs = []
        if index < len(self.times) and self.matches_day(first_date):
            runs.append(_Run(base, self.times, index, len(self.times)))
        if index > 0 and self.matches_day(first_date + DAY):
            runs.append(_Run(base + DAY, self.times, 0, index))
        return _Day(runs=runs)

    def _irregular_day(self, day_start: datetime, low: timedelta, high: timedelta) -> _Day:
        # A wall time w lands at w - offset for one of the two offsets around the change (a missing wall
        # time uses the one before it), so the walls that can land in this day lie in this window.
        first_wall = (day_start + low).replace(tzinfo=None)
        last_wall = (day_start + DAY + high).replace(tzinfo=None)
        end = day_start + DAY
        found: set[datetime] = set()
        day = first_wall.date()
        while day <= last_wall.date():
            if self.matches_day(day):
                midnight = datetime.combine(day, time())
                lo = bisect.bisect_left(self.times, (first_wall - midnight) // MINUTE_DELTA)
                hi = bisect.bisect_right(self.times, (last_wall - midnight) // MINUTE_DELTA)
                for minutes in self.times[lo:hi]:
                    instant = resolve(midnight + timedelta(minutes=minutes), self.tz)
                    if day_start <= instant < end:
                        found.add(instant)
            day += DAY
        return _Day(instants=sorted(found))

    def _skip_empty(self, day_start: datetime) -> datetime:
        """A UTC day from which on the next occurrence can lie, at or after `day_start` (no day before it
        has one, given that none before `day_start` has): jumps over months that do not match."""
        local_date = (day_start.replace(tzinfo=None) - DAY).date()  # no zone is more than 14 h ahead of UTC
        found = self.next_matching_date(local_date)
        if found is None:
            raise CronError("This schedule never runs.")
        # Wall times of that date or later land no earlier than its midnight minus a day (a gap moves a
        # wall time later, a fold by at most 24 hours earlier).
        try:
            earliest = _floor_day(resolve(datetime.combine(found, time()), self.tz) - DAY)
        except OverflowError as exc:
            raise ScheduleOverflow("the occurrence lies beyond the year 9000") from exc
        return max(day_start, earliest)

    # -- instants --

    def nth_after(self, moment: datetime, n: int) -> datetime:
        """The n-th (n >= 1) occurrence strictly after `moment` (occurrences before any anchor count)."""
        moment = moment.astimezone(UTC)
        day_start = _floor_day(moment)
        while True:
            if day_start >= MAX_INSTANT:
                raise ScheduleOverflow("the occurrence lies beyond the year 9000")
            plan = self.day_plan(day_start)
            available = plan.count_after(moment)
            if available >= n:
                return _check_range(plan.nth_after(moment, n))
            n -= available
            day_start += DAY
            if not plan.total:
                day_start = self._skip_empty(day_start)

    def next_at_or_after(self, moment: datetime) -> datetime:
        return self.nth_after(moment - timedelta(microseconds=1), 1)

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many occurrences lie in (start, end]: one arithmetic step per UTC day."""
        start, end = start.astimezone(UTC), end.astimezone(UTC)
        if end <= start:
            return 0
        count = 0
        day_start = _floor_day(start)
        last_day = _floor_day(end)
        while day_start <= last_day:
            plan = self.day_plan(day_start)
            if plan.total:
                count += plan.count_after(start) - plan.count_after(end)
                day_start += DAY
            else:
                day_start = self._skip_empty(day_start + DAY)
        return count

    def is_occurrence(self, instant: datetime) -> bool:
        try:
            return self.next_at_or_after(instant) == instant
        except (ScheduleOverflow, CronError):
            return False

    # -- occurrence k of the schedule started at an anchor --

    def _remember(self, anchor: datetime, index: int, instant: datetime) -> None:
        key = (self.expression, self.time_zone, anchor)
        with _MARKS_LOCK:
            marks = _MARKS.get(key)
            if marks is None:
                marks = _MARKS[key] = {}
                if len(_MARKS) > MAX_REMEMBERED_GRIDS:
                    _MARKS.popitem(last=False)
            else:
                _MARKS.move_to_end(key)
            marks[index] = instant
            if len(marks) > 8:
                del marks[min(marks)]

    def _best_mark(self, anchor: datetime, k: int, cursor: Cursor | None) -> tuple[int, datetime]:
        """The known occurrence with the largest index <= k: a remembered answer, the cursor, or the first."""
        with _MARKS_LOCK:
            marks = dict(_MARKS.get((self.expression, self.time_zone, anchor), {}))
        if cursor is not None and 1 < cursor.index <= k and cursor.index not in marks:
            at = cursor.at.astimezone(UTC)
            # The cursor is the caller's stored answer for its index (trusted for the index); one that
            # is not even an occurrence of this schedule (a definition changed under it) is not used.
            if at > anchor and self.is_occurrence(at):
                marks[cursor.index] = at
                self._remember(anchor, cursor.index, at)
        known = [i for i in marks if i <= k]
        if not known:
            marks[1] = self.next_at_or_after(anchor)
            self._remember(anchor, 1, marks[1])
            known = [1]
        index = max(known)
        return index, marks[index]

    def occurrence_due(self, anchor: datetime, k: int, cursor: Cursor | None = None) -> datetime:
        """UTC instant of occurrence k (1-based): the k-th occurrence at or after `anchor`."""
        if k < 1:
            raise ValueError("occurrences are numbered from 1")
        anchor = anchor.astimezone(UTC)
        index, instant = self._best_mark(anchor, k, cursor)
        if index == k:
            return instant
        due = self.nth_after(instant, k - index) if k - index > STEP_LIMIT else self._step(instant, k - index)
        self._remember(anchor, k, due)
        return due

    def _step(self, instant: datetime, n: int) -> datetime:
        for _ in range(n):
            instant = self.nth_after(instant, 1)
        return instant

    def first_index_due_after(
        self, anchor: datetime, moment: datetime, from_index: int = 1, cursor: Cursor | None = None
    ) -> int:
        """Smallest k >= from_index whose occurrence is strictly after `moment`. O(days from the
        occurrence from_index to `moment`), however many occurrences lie between."""
        anchor = anchor.astimezone(UTC)
        base = self.occurrence_due(anchor, from_index, cursor)
        if base > moment:
            return from_index
        k = from_index + self.count_between(base, moment) + 1
        self._remember(anchor, k, self.nth_after(moment, 1))
        return k

    def upcoming(self, anchor: datetime, from_index: int, count: int, cursor: Cursor | None = None) -> list[datetime]:
        result: list[datetime] = []
        if count < 1:
            return result
        try:
            instant = self.occurrence_due(anchor, from_index, cursor)
            result.append(instant)
            while len(result) < count:
                instant = self.nth_after(instant, 1)
                result.append(instant)
        except ScheduleOverflow:
            pass
        return result

    # -- the shortest time between two runs --

    def min_gap_seconds(self, start: datetime, enough: float) -> tuple[float, str]:
        """The shortest time between two consecutive runs (seconds) and where it happens ("" or
        " around a daylight-saving change"); any value >= `enough` means "at least that".

        Reasoned, not sampled, so that no schedule slips through because its densest stretch is rare.
        Measured in wall-clock time, as an interval order's days are 24 hours (a spring-forward night
        one hour shorter does not count): within a day, the gaps of the sorted times of day; across
        midnight, the night's gap after the closest two matching dates (searched over a whole 400-year
        cycle when it matters). Runs that a gap moves later (02:10 to 02:40 in a 30-minute gap, next
        to a 02:50 run) are measured by their real instants, at every such change of the zone in the
        next DST_HORIZON_YEARS years."""
        times = self.times
        best = float("inf")
        for a, b in itertools.pairwise(times):
            best = min(best, (b - a) * 60.0)
        night = (1440 - times[-1] + times[0]) * 60.0
        if night < min(best, enough):
            # Only dates closer than this many days can make a night's gap short enough to matter.
            limit_days = int((min(best, enough) - night) // 86400) + 1
            closest = self._closest_matching_dates(start.date(), limit_days)
            if closest is not None:
                best = min(best, night + (closest - 1) * 86400.0)
        if best < enough:
            return best, ""
        moved = self._closest_to_moved_runs(start, enough)
        if moved < enough:
            return moved, " around a daylight-saving change"
        return best, ""

    def _closest_matching_dates(self, start: date, limit_days: int) -> int | None:
        """The smallest distance in days (<= limit_days) between two consecutive matching dates."""
        previous = None
        day: date | None = start
        end = start + timedelta(days=CALENDAR_CYCLE_DAYS + limit_days)
        closest = None
        while day is not None and day <= end:
            day = self.next_matching_date(day)
            if day is None:
                break
            if previous is not None:
                distance = (day - previous).days
                if distance <= limit_days and (closest is None or distance < closest):
                    closest = distance
                    if closest == 1:
                        break
            previous = day
            day += DAY
        return closest

    def _closest_to_moved_runs(self, start: datetime, enough: float) -> float:
        """The shortest real gap next to a run that a spring-forward gap moved later."""
        best = float("inf")
        window = timedelta(seconds=enough)
        for before_wall, size in _forward_changes(self.time_zone, start.year):
            day = before_wall.date()
            while datetime.combine(day, time()) < before_wall + size:
                if self.matches_day(day):
                    midnight = datetime.combine(day, time())
                    for minutes in self.times:
                        wall = midnight + timedelta(minutes=minutes)
                        if before_wall <= wall < before_wall + size:
                            best = min(best, self._closest_neighbour(resolve(wall, self.tz), window))
                day += DAY
        return best

    def _closest_neighbour(self, instant: datetime, window: timedelta) -> float:
        gaps = [(self.nth_after(instant, 1) - instant).total_seconds()]
        earlier = self.next_at_or_after(instant - window)
        while earlier < instant:
            gaps.append((instant - earlier).total_seconds())
            earlier = self.nth_after(earlier, 1)
        return min(gaps)


@lru_cache(maxsize=256)
def _forward_changes(time_zone: str, year: int) -> tuple[tuple[datetime, timedelta], ...]:
    """The zone's spring-forward gaps in DST_HORIZON_YEARS years from `year`: (the naive wall time the
    gap starts at, its length)."""
    tz = zone(time_zone)
    changes = []
    instant = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(min(year + DST_HORIZON_YEARS, MAX_INSTANT.year - 1), 1, 1, tzinfo=UTC)
    step = timedelta(hours=12)  # changes are a week apart: none hides between two samples
    previous = instant.astimezone(tz).utcoffset()
    while instant < end:
        nxt = instant + step
        offset = nxt.astimezone(tz).utcoffset()
        if offset is not None and previous is not None and offset > previous:
            low, high = instant, nxt  # the change lies in (low, high]: narrow it down to the minute
            while high - low > timedelta(minutes=1):
                middle = low + (high - low) / 2
                if middle.astimezone(tz).utcoffset() == previous:
                    low = middle
                else:
                    high = middle
            changes.append(((high + previous).replace(tzinfo=None, second=0, microsecond=0), offset - previous))
        previous = offset
        instant = nxt
    return tuple(changes)


@lru_cache(maxsize=1024)
def cron_schedule(expression: str, time_zone: str) -> CronSchedule:
    """The parsed schedule (CronError for a bad expression, ValueError for an unknown zone)."""
    return CronSchedule(expression, time_zone)


# --- words --------------------------------------------------------------------------------------------


def _clock(wall: datetime) -> str:
    return wall.strftime("%H:%M:%S" if wall.second else "%H:%M")


@lru_cache(maxsize=4096)  # about 0.2 ms each, and a page lists 50 orders
def describe_cron(expression: str, time_zone: str) -> str:
    """'At 09:30, Monday through Friday (Europe/Berlin)'."""
    options = Options()
    options.use_24hour_time_format = True
    try:
        words = ExpressionDescriptor(normalize_cron(expression), options).get_description()
    except Exception:  # noqa: BLE001 - a description must never break a page; fall back to the expression
        words = f"Cron {normalize_cron(expression)}"
    return f"{words} ({time_zone})"


def describe_interval(interval: int, unit: str, anchor: datetime, time_zone: str) -> str:
    """'Every 2 months on day 31 at 09:30 (Europe/Berlin), or on the last day of shorter months'."""
    try:
        wall = anchor.astimezone(zone(time_zone))
    except ValueError:
        wall = anchor.astimezone(UTC)
    singular = unit[:-1]
    every = f"Every {singular}" if interval == 1 else f"Every {interval} {unit}"
    if unit in ("seconds", "minutes", "hours"):
        return every
    at = f"at {_clock(wall)} ({time_zone})"
    if unit == "days":
        return f"{every} {at}"
    if unit == "weeks":
        return f"{every} on {wall.strftime('%A')} {at}"
    text = f"{every} on day {wall.day} {at}"
    if wall.day > 28:
        text += ", or on the last day of shorter months"
    return text


def describe_once(moment: datetime, time_zone: str) -> str:
    try:
        wall = moment.astimezone(zone(time_zone))
    except ValueError:
        wall = moment.astimezone(UTC)
    return f"Once, on {wall.strftime('%Y-%m-%d')} at {_clock(wall)} ({time_zone})"


def forget_answers() -> None:
    """Forget parsed schedules and remembered answers (for measuring the path without them)."""
    cron_schedule.cache_clear()
    with _MARKS_LOCK:
        _MARKS.clear()
