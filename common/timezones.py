"""IANA time-zone names: which exist, and the choices a form offers."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones


@cache
def _zone_names() -> frozenset[str]:
    # available_timezones() walks the tz database on disk: once per process is enough.
    return frozenset(available_timezones() | {"UTC"})


def is_valid_time_zone(name: str) -> bool:
    return name in _zone_names()


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    """Every zone, sorted, for a choice field: the account page and the order form offer the same."""
    return [(name, name.replace("_", " ")) for name in sorted(_zone_names())]
