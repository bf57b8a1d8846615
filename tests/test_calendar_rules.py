"""Calendar schedules (orders/calendar_rules.py) against independent oracles.

The cron oracle enumerates every UTC minute of a window and reads it in the zone with zoneinfo (a plain
UTC -> local conversion, never fold or gap handling), which gives each wall minute that exists its
first instant, and each wall minute skipped by a spring-forward gap the instant it lands on when read
with the offset before the gap. The expressions are generated from parts whose meaning the generator
knows, so the oracle never parses cron. Every occurrence the product computes must be the oracle's:
none early, none missing, none twice. Fixed seeds: a failure is reproducible.
"""

from __future__ import annotations

import bisect
import calendar
import itertools
import random
import time as clock
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orders.calendar_rules import (
    MAX_EXPRESSION_LENGTH,
    Cursor,
    ScheduleOverflow,
    add_months,
    cron_problems,
    cron_schedule,
    describe_cron,
    describe_interval,
    describe_once,
    forget_answers,
    monthly_first_index_due_after,
    monthly_occurrence_due,
)

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kathmandu", "Pacific/Apia"]
MINUTE = timedelta(minutes=1)
NAMES_DOW = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
NAMES_MONTH = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


# --- the oracle ------------------------------------------------------------------------------------


@dataclass
class Spec:
    """A generated expression and what it means."""

    text: str
    minutes: set[int]
    hours: set[int]
    days: set[int]
    last_day: bool
    last_weekday: bool
    months: set[int]
    weekdays: set[int]  # 0 = Sunday
    last_of: set[int]  # 5L: the last Friday of the month
    nth_of: set[tuple[int, int]]  # 5#2: the second Friday
    day_and: bool

    def matches_date(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        last = calendar.monthrange(d.year, d.month)[1]
        last_wd = last
        while date(d.year, d.month, last_wd).weekday() >= 5:
            last_wd -= 1
        dom = d.day in self.days or (self.last_day and d.day == last) or (self.last_weekday and d.day == last_wd)
        cron_dow = (d.weekday() + 1) % 7
        dow = (
            cron_dow in self.weekdays
            or (cron_dow in self.last_of and d.day + 7 > last)
            or (cron_dow, (d.day - 1) // 7 + 1) in self.nth_of
        )
        return (dom and dow) if self.day_and else (dom or dow)


def _numeric_field(rng: random.Random, low: int, high: int, names: list[str] | None = None) -> tuple[str, set[int]]:
    kind = rng.choice(["star", "step", "one", "one", "range", "range_step", "list", "list"])
    span = high - low + 1

    def show(value: int) -> str:
        if names and rng.random() < 0.4:
            return names[value - low]
        return str(value)

    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "step":
        step = rng.randint(1, max(1, span // 2))
        return f"*/{step}", set(range(low, high + 1, step))
    if kind == "one":
        value = rng.randint(low, high)
        return show(value), {value}
    if kind in ("range", "range_step"):
        a = rng.randint(low, high - 1)
        b = rng.randint(a + 1, high)
        if kind == "range":
            return f"{show(a)}-{show(b)}", set(range(a, b + 1))
        step = rng.randint(1, max(1, (b - a) // 2 + 1))
        return f"{a}-{b}/{step}", set(range(a, b + 1, step))
    values = sorted(rng.sample(range(low, high + 1), rng.randint(2, min(4, span))))
    return ",".join(show(v) for v in values), set(values)


def random_spec(rng: random.Random) -> Spec:
    # Minutes and hours sparse enough that a few days hold hundreds of runs, not thousands.
    minute_text, minutes = _numeric_field(rng, 0, 59)
    if rng.random() < 0.7 and len(minutes) > 12:
        minute_text, minutes = rng.choice([("0", {0}), ("*/15", {0, 15, 30, 45}), ("10,50", {10, 50})])
    hour_text, hours = _numeric_field(rng, 0, 23)
    if rng.random() < 0.5:
        # Hours near the clock changes of the zones under test (00:00-04:00 local).
        chosen = sorted(rng.sample(range(0, 5), rng.randint(1, 3)))
        hour_text, hours = ",".join(map(str, chosen)), set(chosen)
    days: set[int] = set()
    last_day = last_weekday = False
    dom_kind = rng.choice(["star", "star", "star", "numeric", "L", "LW", "mixed"])
    if dom_kind == "star":
        dom_text, days = "*", set(range(1, 32))
    elif dom_kind == "numeric":
        dom_text, days = _numeric_field(rng, 1, 31)
    elif dom_kind == "L":
        dom_text, last_day = "L", True
    elif dom_kind == "LW":
        dom_text, last_weekday = "LW", True
    else:
        value = rng.randint(1, 28)
        dom_text, days, last_day = f"{value},L", {value}, True
    month_text, months = ("*", set(range(1, 13))) if rng.random() < 0.6 else _numeric_field(rng, 1, 12, NAMES_MONTH)
    weekdays: set[int] = set()
    last_of: set[int] = set()
    nth_of: set[tuple[int, int]] = set()
    dow_kind = rng.choice(["star", "star", "star", "numeric", "names", "last", "nth", "seven"])
    if dow_kind == "star":
        dow_text, weekdays = "*", set(range(7))
    elif dow_kind == "numeric":
        dow_text, weekdays = _numeric_field(rng, 0, 6)
    elif dow_kind == "names":
        a = rng.randint(0, 5)
        b = rng.randint(a + 1, 6)
        dow_text, weekdays = f"{NAMES_DOW[a]}-{NAMES_DOW[b]}", set(range(a, b + 1))
    elif dow_kind == "last":
        value = rng.randint(0, 6)
        dow_text, last_of = f"{value}L", {value}
    elif dow_kind == "nth":
        value, nth = rng.randint(0, 6), rng.randint(1, 4)
        dow_text, nth_of = f"{value}#{nth}", {(value, nth)}
    else:
        dow_text, weekdays = "7", {0}  # 7 is Sunday too
    text = f"{minute_text} {hour_text} {dom_text} {month_text} {dow_text}"
    day_and = dom_text.startswith("*") or dow_text.startswith("*")
    return Spec(text, minutes, hours, days, last_day, last_weekday, months, weekdays, last_of, nth_of, day_and)


class Window:
    """Minute-by-minute reading of [start, end) (UTC) in a zone: which instant each wall minute runs at."""

    def __init__(self, time_zone: str, start: datetime, end: datetime) -> None:
        self.tz = ZoneInfo(time_zone)
        self.start, self.end = start, end
        self.runs_at: dict[datetime, datetime] = {}  # naive wall minute -> instant, by the DST rule
        self.moved: set[datetime] = set()  # instants of wall minutes a gap skipped
        instant = start
        previous_wall: datetime | None = None
        previous_offset: timedelta | None = None
        while instant < end:
            local = instant.astimezone(self.tz)
            wall = local.replace(tzinfo=None)
            if previous_wall is not None and wall - previous_wall > MINUTE:
                # The clocks jumped forward: the skipped wall minutes run at their reading with the
                # offset that was in force before the jump.
                skipped = previous_wall + MINUTE
                while skipped < wall:
                    assert previous_offset is not None
                    self.runs_at[skipped] = (skipped - previous_offset).replace(tzinfo=UTC)
                    self.moved.add(self.runs_at[skipped])
                    skipped += MINUTE
            self.runs_at.setdefault(wall, instant)  # a repeated wall minute runs at its first instant
            previous_wall, previous_offset = wall, local.utcoffset()
            instant += MINUTE
        # Complete only where every wall minute that can land there was read (clock changes <= 24 h).
        self.complete_from = start + timedelta(hours=26)
        self.complete_until = end - timedelta(hours=26)

    def occurrences(self, spec: Spec) -> list[datetime]:
        dates: dict[date, bool] = {}
        found = set()
        for wall, instant in self.runs_at.items():
            if wall.minute in spec.minutes and wall.hour in spec.hours:
                d = wall.date()
                if d not in dates:
                    dates[d] = spec.matches_date(d)
                if dates[d]:
                    found.add(instant)
        return sorted(t for t in found if self.complete_from <= t < self.complete_until)


def clock_changes(time_zone: str, year: int) -> list[datetime]:
    """Instants (UTC, to the hour) at which the zone's offset changes during the year: hourly scan."""
    tz = ZoneInfo(time_zone)
    changes = []
    instant = datetime(year, 1, 1, tzinfo=UTC)
    previous = instant.astimezone(tz).utcoffset()
    while instant.year == year:
        instant += timedelta(hours=1)
        offset = instant.astimezone(tz).utcoffset()
        if offset != previous:
            changes.append(instant)
        previous = offset
    return changes


def schedulable(spec: Spec) -> bool:
    return not cron_problems(spec.text, time_zone="UTC", start=datetime(2000, 1, 1, tzinfo=UTC), min_interval_seconds=1)


def product_between(expression: str, time_zone: str, anchor: datetime, until: datetime) -> list[datetime]:
    schedule = cron_schedule(expression, time_zone)
    result: list[datetime] = []
    try:
        instant = schedule.occurrence_due(anchor, 1)
    except ScheduleOverflow:
        return result
    while instant < until:
        result.append(instant)
        instant = schedule.nth_after(instant, 1)
    return result


def _windows(rng: random.Random) -> list[Window]:
    windows = []
    for name in ZONES:
        years = [2011, 2012] if name == "Pacific/Apia" else [rng.randint(1995, 2045)]
        centres = [c for y in years for c in clock_changes(name, y)]
        centres += [datetime(rng.randint(1995, 2045), rng.randint(1, 12), rng.randint(1, 28), tzinfo=UTC)]
        for centre in centres:
            windows.append(Window(name, centre - timedelta(hours=60), centre + timedelta(hours=60)))
    return windows


@pytest.fixture(scope="module")
def windows() -> list[Window]:
    return _windows(random.Random(20261201))


def test_the_oracle_itself_follows_the_rule_on_a_known_night() -> None:
    # Berlin, 2030-03-31: 02:00-02:59 does not exist; 2030-10-27: 02:00-02:59 happens twice.
    spring = Window("Europe/Berlin", datetime(2030, 3, 30, tzinfo=UTC), datetime(2030, 4, 1, tzinfo=UTC))
    assert spring.runs_at[datetime(2030, 3, 31, 2, 30)] == datetime(2030, 3, 31, 1, 30, tzinfo=UTC)  # 03:30 CEST
    autumn = Window("Europe/Berlin", datetime(2030, 10, 26, tzinfo=UTC), datetime(2030, 10, 28, tzinfo=UTC))
    assert autumn.runs_at[datetime(2030, 10, 27, 2, 30)] == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)  # first


def test_random_cron_schedules_match_the_minute_by_minute_oracle(windows: list[Window]) -> None:
    rng = random.Random(13)
    checked = occurrences = moved = 0
    for window in windows:
        for _ in range(150):
            spec = random_spec(rng)
            if not schedulable(spec):
                continue  # e.g. a day no month of the expression has: refused, tested elsewhere
            anchor = window.complete_from + timedelta(seconds=rng.randint(0, 20 * 3600))
            expected = [t for t in window.occurrences(spec) if t >= anchor]
            got = product_between(spec.text, window.tz.key, anchor, window.complete_until)
            assert got == expected, (spec.text, window.tz.key, anchor)
            assert all(a < b for a, b in itertools.pairwise(got))  # none twice, in order
            assert all(t >= anchor for t in got)  # none early
            checked += 1
            occurrences += len(got)
            moved += len(window.moved.intersection(got))
    # Thousands of schedules, and hundreds of runs that a spring-forward gap moved.
    assert checked > 2000 and occurrences > 20_000 and moved > 500


def test_jumps_and_counts_agree_with_the_oracle(windows: list[Window]) -> None:
    """occurrence k far from the last answer (counted by whole days), a cursor, first_index_due_after
    and count_between, against the oracle's own numbering."""
    rng = random.Random(7)
    checked = 0
    for window in windows:
        for _ in range(40):
            spec = random_spec(rng)
            if rng.random() < 0.3:
                spec.text = "* " + " ".join(spec.text.split()[1:])
                spec.minutes = set(range(60))
            if not schedulable(spec):
                continue
            anchor = window.complete_from
            expected = [t for t in window.occurrences(spec) if t >= anchor]
            if len(expected) < 2:
                continue
            name = window.tz.key
            forget_answers()  # no remembered answers: every jump starts from the anchor
            schedule = cron_schedule(spec.text, name)
            for k in sorted(rng.sample(range(1, len(expected) + 1), min(5, len(expected))), reverse=True):
                assert schedule.occurrence_due(anchor, k) == expected[k - 1], (spec.text, name, k)
            k = rng.randint(1, len(expected))
            cursor = Cursor(k, expected[k - 1])
            later = rng.randint(k, len(expected))
            assert schedule.occurrence_due(anchor, later, cursor) == expected[later - 1]
            moment = anchor + (window.complete_until - anchor) * rng.random()
            want = bisect.bisect_right(expected, moment) + 1
            if want <= len(expected):
                assert schedule.first_index_due_after(anchor, moment) == want, (spec.text, name, moment)
                assert schedule.first_index_due_after(anchor, moment, from_index=1, cursor=cursor) == want
            a = anchor + (moment - anchor) * rng.random()
            assert schedule.count_between(a, moment) == sum(1 for t in expected if a < t <= moment)
            checked += 1
    assert checked > 200


def test_hourly_cron_fires_once_for_each_wall_clock_hour_that_exists() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    schedule = cron_schedule("0 * * * *", "Europe/Berlin")
    # Spring: 02:00 does not exist (02:00 would run at 03:00, where 03:00 runs anyway): 23 runs.
    spring = product_between(
        "0 * * * *", "Europe/Berlin", datetime(2030, 3, 30, 23, tzinfo=UTC), datetime(2030, 3, 31, 22, tzinfo=UTC)
    )
    assert len(spring) == 23
    assert [t.astimezone(berlin).hour for t in spring[:4]] == [0, 1, 3, 4]
    # Autumn: 02:00 happens twice and runs once, at the first (CEST) instant: 24 runs in 25 hours.
    autumn = product_between(
        "0 * * * *", "Europe/Berlin", datetime(2030, 10, 26, 22, tzinfo=UTC), datetime(2030, 10, 27, 23, tzinfo=UTC)
    )
    assert len(autumn) == 24
    assert autumn[2] == datetime(2030, 10, 27, 0, tzinfo=UTC) and autumn[3] == datetime(2030, 10, 27, 2, tzinfo=UTC)
    assert schedule.is_occurrence(datetime(2030, 10, 27, 0, tzinfo=UTC))
    assert not schedule.is_occurrence(datetime(2030, 10, 27, 1, tzinfo=UTC))  # 02:00 CET, the second one


def test_a_missing_wall_time_runs_later_by_the_gap_and_collisions_run_once() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    runs = product_between(
        "30 2,3 * * *", "Europe/Berlin", datetime(2030, 3, 30, 12, tzinfo=UTC), datetime(2030, 3, 31, 12, tzinfo=UTC)
    )
    # 02:30 does not exist: it runs at 03:30, where 03:30 also matches: one run.
    assert [t.astimezone(berlin).strftime("%H:%M") for t in runs] == ["03:30"]
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2030-10-06 02:00 -> 02:30 (a 30-minute gap)
    runs = product_between(
        "10,50 2 * * *",
        "Australia/Lord_Howe",
        datetime(2030, 10, 5, 12, tzinfo=UTC),
        datetime(2030, 10, 6, 12, tzinfo=UTC),
    )
    assert [t.astimezone(lord_howe).strftime("%H:%M") for t in runs] == ["02:40", "02:50"]
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 never happened there
    runs = product_between(
        "0 9 30 12 *", "Pacific/Apia", datetime(2011, 12, 1, tzinfo=UTC), datetime(2012, 12, 1, tzinfo=UTC)
    )
    assert [t.astimezone(apia).isoformat() for t in runs] == ["2011-12-31T09:00:00+14:00"]


def test_first_index_after_a_twenty_year_pause_is_counted_not_stepped() -> None:
    schedule = cron_schedule("* * * * *", "Europe/Berlin")
    anchor = datetime(2030, 1, 1, tzinfo=UTC)
    moment = datetime(2050, 1, 1, 0, 0, 30, tzinfo=UTC)
    started = clock.thread_time()  # CPU time: the shared machine's load does not count
    k = schedule.first_index_due_after(anchor, moment)
    elapsed = clock.thread_time() - started
    # Every existing wall minute once: UTC minutes, minus the repeated hour each autumn.
    minutes = int((moment - anchor).total_seconds() // 60) + 1
    assert k == minutes - 20 * 60 + 1
    assert schedule.occurrence_due(anchor, k) == datetime(2050, 1, 1, 0, 1, tzinfo=UTC)
    assert elapsed < 2.0  # about 7,300 days of arithmetic, not ten million steps


def test_a_cursor_makes_the_next_occurrence_one_step() -> None:
    forget_answers()
    schedule = cron_schedule("*/5 * * * *", "America/New_York")
    anchor = datetime(2030, 1, 1, tzinfo=UTC)
    k = 300_000
    at = schedule.occurrence_due(anchor, k)
    forget_answers()
    fresh = cron_schedule("*/5 * * * *", "America/New_York")
    started = clock.thread_time()
    for _ in range(200):
        assert fresh.occurrence_due(anchor, k + 1, Cursor(k, at)) == at + timedelta(minutes=5)
    assert (clock.thread_time() - started) / 200 < 0.002
    # A cursor that is not an occurrence of this schedule (a definition changed under it) is ignored.
    assert fresh.occurrence_due(anchor, k + 1, Cursor(k, at + timedelta(minutes=1))) == at + timedelta(minutes=5)


# --- validation -------------------------------------------------------------------------------------

START = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression,words",
    [
        ("*/0 * * * *", "step of 0"),
        ("61 * * * *", "minute field allows 0-59; 61 is out of range"),
        ("0 24 * * *", "hour field allows 0-23"),
        ("0 0 * * * *", "has 5 fields"),
        ("0 0 * *", "this one has 4"),
        ("@reboot", "@reboot is not a time of day"),
        ("@daily", "0 0 * * *"),
        ("0 0 30 2 *", "never runs"),
        ("0 0 31 4,6,9,11 *", "never runs"),
        ("0 0 */31 * 1#5", "never runs"),
        ("x" * 10_000, f"At most {MAX_EXPRESSION_LENGTH} characters"),
        ("0 0 1 13 *", "month field allows 1-12"),
        ("0 0 1 * 9", "day-of-week field allows 0-7"),
        ("0 0 ? * *", "day-of-month field"),
        ("", "Enter a cron expression"),
        ("5-5/2 * * * *", "a range of one value with a step"),
    ],
)
def test_bad_expressions_get_one_clear_message(expression: str, words: str) -> None:
    problems = cron_problems(expression, time_zone="Europe/Berlin", start=START, min_interval_seconds=1)
    assert len(problems) == 1 and words in problems[0], problems


@pytest.mark.parametrize(
    "expression",
    ["30 9 * * 1-5", "0 0 L * *", "0 12 * * 5L", "0 12 * * fri#2", "*/15 8-18 * JAN-MAR MON", "0 0 29 2 *"],
)
def test_good_expressions_pass(expression: str) -> None:
    assert cron_problems(expression, time_zone="Europe/Berlin", start=START, min_interval_seconds=1) == []


@pytest.mark.parametrize(
    "expression,time_zone,minimum,refused",
    [
        ("*/5 * * * *", "UTC", 600, True),
        ("*/10 * * * *", "UTC", 600, False),
        ("0,1 0 29 2 *", "UTC", 120, True),  # a burst once every four years still counts
        ("* 3 * 2 1#5", "UTC", 120, True),  # only on a 5th Monday of February (every 28 or 40 years)
        ("59 23 * * *", "UTC", 3600, False),
        ("0,59 0,23 * * *", "UTC", 3600, True),  # 23:59 then 00:00 the next day
        ("0 0 1,L * *", "UTC", 2 * 86400, True),  # the 31st then the 1st
        ("0 0 1,L 1 *", "UTC", 2 * 86400, False),  # January 1st and 31st: never on consecutive days
        ("0 9 * * 1", "Europe/Berlin", 7 * 86400, False),  # wall-clock weeks, as for interval orders
        ("10,50 2 * * *", "Australia/Lord_Howe", 1200, True),  # 02:10 moves to 02:40, next to 02:50
        ("10,50 2 * * *", "Australia/Lord_Howe", 600, False),
    ],
)
def test_the_minimum_interval_is_reasoned_not_sampled(
    expression: str, time_zone: str, minimum: int, refused: bool
) -> None:
    problems = cron_problems(expression, time_zone=time_zone, start=START, min_interval_seconds=minimum)
    assert bool(problems) == refused, problems
    if refused:
        assert "apart" in problems[0] and "minimum interval" in problems[0]


# --- words --------------------------------------------------------------------------------------------


def test_schedules_are_said_in_words() -> None:
    assert describe_cron("30 9 * * 1-5", "Europe/Berlin") == "At 09:30, Monday through Friday (Europe/Berlin)"
    assert describe_cron("0 0 L * *", "UTC") == "At 00:00, on the last day of the month (UTC)"
    anchor = datetime(2030, 1, 31, 8, 30, tzinfo=UTC)
    assert describe_interval(2, "months", anchor, "Europe/Berlin").startswith("Every 2 months on day 31 at 09:30")
    assert describe_interval(1, "weeks", anchor, "Europe/Berlin") == "Every week on Thursday at 09:30 (Europe/Berlin)"
    assert describe_interval(90, "seconds", anchor, "Europe/Berlin") == "Every 90 seconds"
    assert describe_once(anchor, "Europe/Berlin") == "Once, on 2030-01-31 at 09:30 (Europe/Berlin)"


# --- every N months -----------------------------------------------------------------------------------


def oracle_resolve(wall: datetime, time_zone: str) -> datetime:
    """The DST rule from UTC -> local conversions only: the first instant showing `wall`, or, for a
    wall time the clocks skip, its reading with the offset in force before the skip."""
    tz = ZoneInfo(time_zone)
    offsets = {(wall.replace(tzinfo=UTC) + timedelta(hours=h)).astimezone(tz).utcoffset() for h in range(-30, 31, 6)}
    candidates = sorted((wall - o).replace(tzinfo=UTC) for o in offsets if o is not None)
    showing = [c for c in candidates if c.astimezone(tz).replace(tzinfo=None) == wall]
    if showing:
        return showing[0]
    return next(c for c in candidates if c.astimezone(tz).replace(tzinfo=None) > wall)


def test_random_monthly_schedules_match_the_calendar_oracle() -> None:
    rng = random.Random(31)
    checked = 0
    for _ in range(400):
        name = rng.choice(ZONES)
        day = rng.choice([1, 15, 28, 29, 30, 31, 31, rng.randint(1, 31)])
        year, month = rng.randint(1995, 2040), rng.randint(1, 12)
        if day > calendar.monthrange(year, month)[1]:
            continue
        # Half of the anchors at the hours clocks change at.
        hour = rng.choice([0, 1, 2, 3, rng.randint(0, 23)])
        wall = datetime(year, month, day, hour, rng.choice([0, 15, 30, 45]))
        anchor = oracle_resolve(wall, name)
        interval = rng.choice([1, 1, 2, 3, 6, 12, rng.randint(1, 25)])
        for k in range(1, 60):
            months = (k - 1) * interval
            y, m = divmod(year * 12 + month - 1 + months, 12)
            last = (date(y + (m + 1) // 12, (m + 1) % 12 + 1, 1) - timedelta(days=1)).day
            target = wall.replace(year=y, month=m + 1, day=min(day, last))
            expected = anchor if k == 1 else oracle_resolve(target, name)
            assert monthly_occurrence_due(anchor, name, interval, k) == expected, (name, wall, interval, k)
            checked += 1
        moment = anchor + timedelta(days=rng.randint(0, 4000), seconds=rng.randint(0, 86400))
        k = monthly_first_index_due_after(anchor, name, interval, moment)
        assert monthly_occurrence_due(anchor, name, interval, k) > moment
        assert k == 1 or monthly_occurrence_due(anchor, name, interval, k - 1) <= moment
    assert checked > 15_000


def test_a_31st_anchor_takes_the_last_day_of_shorter_months_and_returns_to_the_31st() -> None:
    anchor = datetime(2031, 1, 31, 9, 0, tzinfo=UTC)
    days = [monthly_occurrence_due(anchor, "UTC", 1, k).day for k in range(1, 14)]
    assert days == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 31]
    leap = datetime(2032, 2, 29, 9, 0, tzinfo=UTC)
    assert [monthly_occurrence_due(leap, "UTC", 12, k).date() for k in range(1, 4)] == [
        date(2032, 2, 29),
        date(2033, 2, 28),
        date(2034, 2, 28),
    ]
    assert monthly_occurrence_due(leap, "UTC", 48, 2).date() == date(2036, 2, 29)
    assert add_months(datetime(2030, 3, 31), -1) == datetime(2030, 2, 28)


def test_monthly_keeps_the_wall_time_across_dst_and_moves_a_missing_one_by_the_gap() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    anchor = datetime(2030, 1, 31, 2, 30, tzinfo=berlin)
    walls = [monthly_occurrence_due(anchor, "Europe/Berlin", 1, k).astimezone(berlin) for k in range(1, 5)]
    # 2030-03-31 02:30 does not exist in Berlin: it runs at 03:30.
    assert [w.strftime("%m-%d %H:%M") for w in walls] == ["01-31 02:30", "02-28 02:30", "03-31 03:30", "04-30 02:30"]


def test_monthly_occurrences_beyond_the_year_9000_overflow() -> None:
    with pytest.raises(ScheduleOverflow):
        monthly_occurrence_due(datetime(2030, 1, 1, tzinfo=UTC), "UTC", 1200, 10_000)


# --- the grid of every kind (orders/recurrence.py) ------------------------------------------------------


def test_the_grid_carries_its_kind_and_end_at_ends_every_kind() -> None:
    from orders.recurrence import Grid, first_index_due_after, is_misfire, occurrence_due, upcoming

    anchor = datetime(2031, 1, 31, 9, 0, tzinfo=UTC)
    end = datetime(2031, 4, 30, 9, 0, tzinfo=UTC)
    grids = {
        "monthly": Grid(anchor, "UTC", 1, "months", end_at=end),
        "cron": Grid(anchor, "UTC", cron="0 9 L * *", end_at=end),
        "interval": Grid(anchor, "UTC", 30, "days", end_at=end),
    }
    assert {name: grid.kind for name, grid in grids.items()} == {n: n for n in grids}
    assert Grid(anchor, "UTC").kind == "once"
    for grid in grids.values():
        runs = upcoming(grid, 1, 10)
        assert len(runs) == (3 if grid.kind == "interval" else 4) and runs[-1] <= end
        last = len(runs)
        with pytest.raises(ScheduleOverflow):
            occurrence_due(grid, last + 1)
        # Past the end: the index after the last run, whose occurrence does not exist.
        assert first_index_due_after(grid, end + timedelta(days=400)) == last + 1
        assert not is_misfire(grid, last, end + timedelta(days=400), 5)
    assert [t.day for t in upcoming(grids["cron"], 1, 10)] == [31, 28, 31, 30]


def test_a_cron_grid_uses_its_cursor_and_gives_the_same_answers_without_it() -> None:
    from orders.recurrence import Grid, occurrence_due

    anchor = datetime(2030, 6, 1, tzinfo=UTC)
    plain = Grid(anchor, "Asia/Kathmandu", cron="*/7 * * * *")
    due = occurrence_due(plain, 5000)
    forget_answers()
    with_cursor = Grid(anchor, "Asia/Kathmandu", cron="*/7 * * * *", cursor=(5000, due))
    assert occurrence_due(with_cursor, 5001) == occurrence_due(plain, 5001)
    assert with_cursor == plain  # the cursor is not part of what the grid is
