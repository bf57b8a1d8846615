"""The pure schedule arithmetic: hundreds of cases in milliseconds, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orders.recurrence import (
    Grid,
    ScheduleOverflow,
    first_index_due_after,
    interval_seconds,
    is_misfire,
    occurrence_due,
    resolve_wall_time,
    scheduler_time,
    upcoming,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("unit,seconds", [("seconds", 1), ("minutes", 60), ("hours", 3600)])
@pytest.mark.parametrize("interval", [1, 2, 7, 90])
def test_elapsed_units_put_occurrence_k_at_anchor_plus_k_minus_1_intervals(
    unit: str, seconds: int, interval: int
) -> None:
    anchor = datetime(2030, 3, 30, 23, 59, 30, tzinfo=UTC)
    grid = Grid(anchor, "Europe/Berlin", interval, unit)
    for k in range(1, 200):
        assert occurrence_due(grid, k) == anchor + timedelta(seconds=(k - 1) * interval * seconds)


def test_daily_order_keeps_local_wall_time_across_spring_forward_in_berlin() -> None:
    # 2030-03-31 is the spring-forward day in Europe/Berlin (02:00 -> 03:00).
    anchor = datetime(2030, 3, 29, 9, 0, tzinfo=BERLIN)
    grid = Grid(anchor, "Europe/Berlin", 1, "days")
    local = [occurrence_due(grid, k).astimezone(BERLIN) for k in range(1, 6)]
    assert [t.strftime("%m-%d %H:%M") for t in local] == [
        "03-29 09:00",
        "03-30 09:00",
        "03-31 09:00",
        "04-01 09:00",
        "04-02 09:00",
    ]
    # Before the change 09:00 is 08:00 UTC, after it 07:00 UTC: the UTC gap shrinks to 23 h once.
    assert occurrence_due(grid, 3) - occurrence_due(grid, 2) == timedelta(hours=23)


def test_daily_order_keeps_local_wall_time_across_fall_back_in_new_york() -> None:
    anchor = datetime(2030, 11, 1, 9, 0, tzinfo=NEW_YORK)  # DST ends 2030-11-03
    grid = Grid(anchor, "America/New_York", 1, "days")
    local = [occurrence_due(grid, k).astimezone(NEW_YORK) for k in range(1, 5)]
    assert all(t.hour == 9 and t.minute == 0 for t in local)
    assert occurrence_due(grid, 3) - occurrence_due(grid, 2) == timedelta(hours=25)


def test_weekly_order_keeps_wall_time_for_a_year_of_dst_changes() -> None:
    anchor = datetime(2030, 1, 7, 18, 30, tzinfo=BERLIN)
    grid = Grid(anchor, "Europe/Berlin", 1, "weeks")
    for k in range(1, 60):
        local = occurrence_due(grid, k).astimezone(BERLIN)
        assert (local.weekday(), local.hour, local.minute) == (0, 18, 30)


def test_wall_time_inside_the_spring_gap_is_pushed_forward_by_the_gap() -> None:
    # 02:30 does not exist on 2030-03-31 in Berlin: the documented rule runs it at 03:30 local.
    anchor = datetime(2030, 3, 30, 2, 30, tzinfo=BERLIN)
    grid = Grid(anchor, "Europe/Berlin", 1, "days")
    second = occurrence_due(grid, 2).astimezone(BERLIN)
    assert (second.day, second.hour, second.minute) == (31, 3, 30)
    third = occurrence_due(grid, 3).astimezone(BERLIN)
    assert (third.day, third.hour, third.minute) == (1, 2, 30)


def test_wall_time_that_occurs_twice_uses_the_first_instant() -> None:
    # 02:30 happens twice on 2030-10-27 in Berlin: first at +02:00 (00:30 UTC).
    anchor = datetime(2030, 10, 26, 2, 30, tzinfo=BERLIN)
    grid = Grid(anchor, "Europe/Berlin", 1, "days")
    assert occurrence_due(grid, 2) == datetime(2030, 10, 27, 0, 30, tzinfo=UTC)


def test_naive_input_is_read_in_the_orders_time_zone() -> None:
    assert resolve_wall_time(datetime(2030, 7, 1, 9, 0), "Europe/Berlin") == datetime(2030, 7, 1, 7, 0, tzinfo=UTC)
    aware = datetime(2030, 7, 1, 9, 0, tzinfo=UTC)
    assert resolve_wall_time(aware, "Europe/Berlin") == aware


@pytest.mark.parametrize("unit", ["seconds", "minutes", "hours", "days", "weeks"])
@pytest.mark.parametrize("offset_seconds", [-10, 0, 1, 59, 3600, 86400 * 3 + 17, 86400 * 400])
def test_first_index_due_after_is_the_smallest_index_strictly_after(unit: str, offset_seconds: int) -> None:
    anchor = datetime(2030, 3, 25, 1, 30, tzinfo=BERLIN)
    grid = Grid(anchor, "Europe/Berlin", 3, unit)
    moment = anchor + timedelta(seconds=offset_seconds)
    k = first_index_due_after(grid, moment)
    assert occurrence_due(grid, k) > moment
    if k > 1:
        assert occurrence_due(grid, k - 1) <= moment


def test_first_index_due_after_respects_from_index() -> None:
    grid = Grid(datetime(2030, 1, 1, tzinfo=UTC), "UTC", 1, "seconds")
    assert first_index_due_after(grid, datetime(2029, 1, 1, tzinfo=UTC), from_index=5) == 5


def test_upcoming_stops_at_the_limit_and_one_time_has_one() -> None:
    anchor = datetime(2030, 1, 1, tzinfo=UTC)
    assert upcoming(Grid(anchor, "UTC", 1, "hours"), 3, 5, limit_index=4) == [
        anchor + timedelta(hours=2),
        anchor + timedelta(hours=3),
    ]
    assert upcoming(Grid(anchor, "UTC"), 1, 5) == [anchor]


def test_overflowing_occurrence_raises_instead_of_crashing() -> None:
    grid = Grid(datetime(2030, 1, 1, tzinfo=UTC), "UTC", 2_000_000_000, "weeks")
    with pytest.raises(ScheduleOverflow):
        occurrence_due(grid, 2)


def test_scheduler_time_never_rounds_down() -> None:
    due = datetime(2030, 1, 1, 0, 0, 0, 900_000, tzinfo=UTC)
    assert scheduler_time(due) == datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
    whole = datetime(2030, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert scheduler_time(whole) == whole


def test_misfire_means_the_next_slot_is_already_due_plus_grace() -> None:
    anchor = datetime(2030, 1, 1, tzinfo=UTC)
    grid = Grid(anchor, "UTC", 10, "seconds")
    assert not is_misfire(grid, 1, anchor + timedelta(seconds=14), grace_seconds=5)
    assert is_misfire(grid, 1, anchor + timedelta(seconds=15), grace_seconds=5)
    assert not is_misfire(Grid(anchor, "UTC"), 1, anchor + timedelta(days=3), grace_seconds=5)


def test_interval_seconds_counts_calendar_units_nominally() -> None:
    assert interval_seconds(2, "weeks") == 14 * 86400
    assert interval_seconds(5, "minutes") == 300
