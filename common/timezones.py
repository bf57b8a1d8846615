"""The time zones a person can choose, with one spelling everywhere (pages, API, account).

The rule: the zones of tzdata's `zone.tab` (one per populated region of each country, the file
tzdata itself keeps "for choosing a zone", e.g. Europe/Oslo and Europe/Berlin) plus `UTC`. Not
offered and not accepted for new input: the backward-compatibility links (US/Eastern, Asia/Calcutta,
GB), the POSIX-style and fixed-offset zones (EST5EDT, Etc/GMT+5), and the database's own entries
(`localtime`, `Factory`, `posixrules`). A link is refused with the name it stands for, and a browser
that reports a link (some report Asia/Calcutta) gets that name preselected.

Names already stored (an order made before this rule) keep working: is_valid_time_zone (any name
the tz database has) is what the services and the time math accept.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import zoneinfo
from collections.abc import Iterator
from pathlib import Path

UTC_NAME = "UTC"
# Entries of the database that are not places: `localtime` is whatever this machine is set to.
NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


def _tab_lines(name: str) -> Iterator[str]:
    """A .tab file of the tz database zoneinfo reads: the system's first, then the tzdata package."""
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / name
        if path.is_file():
            yield from path.read_text(encoding="utf-8").splitlines()
            return
    resource = importlib.resources.files("tzdata.zoneinfo").joinpath(name)
    yield from resource.read_text(encoding="utf-8").splitlines()


def _zones_of(tab: str) -> set[str]:
    # Columns: country code(s), coordinates, zone name, optional comment.
    return {line.split("\t")[2].strip() for line in _tab_lines(tab) if line and not line.startswith("#")}


@functools.cache
def selectable_zones() -> tuple[str, ...]:
    """Every selectable name, sorted (UTC first)."""
    loadable = zoneinfo.available_timezones()
    return (UTC_NAME, *sorted(_zones_of("zone.tab") & loadable))


@functools.cache
def _selectable_set() -> frozenset[str]:
    return frozenset(selectable_zones())


def is_selectable(name: object) -> bool:
    return isinstance(name, str) and name in _selectable_set()


def region(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else name


@functools.cache
def grouped_choices() -> list[tuple[str, list[tuple[str, str]]]]:
    """Django choices grouped by region (UTC, Africa, America, ...): each label is the name itself."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for name in selectable_zones():
        groups.setdefault(region(name), []).append((name, name))
    return list(groups.items())


def _zone_file_digest(name: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None
    for directory in zoneinfo.TZPATH:
        path = Path(directory) / name
        if path.is_file():
            return hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        resource = importlib.resources.files("tzdata.zoneinfo").joinpath(*name.split("/"))
        return hashlib.sha256(resource.read_bytes()).hexdigest()
    except (FileNotFoundError, ModuleNotFoundError, OSError):
        return None


@functools.cache
def aliases() -> dict[str, str]:
    """Every other loadable name -> the selectable zone with the same rules, where there is one.

    A link's file is a copy of (or points to) its target's; when several selectable zones share
    those rules, the one in zone1970.tab (the canonical zone) wins.
    """
    canonical = _zones_of("zone1970.tab")
    by_digest: dict[str, str] = {}
    for name in selectable_zones():
        digest = _zone_file_digest(name)
        if digest is not None and (
            digest not in by_digest or (name in canonical and by_digest[digest] not in canonical)
        ):
            by_digest[digest] = name
    mapping = {}
    for name in sorted(zoneinfo.available_timezones() - _selectable_set() - NOT_ZONES):
        digest = _zone_file_digest(name)
        if digest is not None and digest in by_digest:
            mapping[name] = by_digest[digest]
    return mapping


def unknown_zone_message(name: object) -> str:
    """The field error for a name that is not selectable, naming the zone to use when it is a link."""
    shown = repr(name) if isinstance(name, str) else "that"
    target = aliases().get(name) if isinstance(name, str) else None
    if target is not None:
        return f"Use {target}: {shown} is an old alias, not a zone name."
    return f"Unknown time zone {shown}: use an IANA zone name such as Europe/Berlin."


@functools.cache
def _loadable_names() -> frozenset[str]:
    # available_timezones() walks the tz database on disk: once per process is enough.
    return frozenset(zoneinfo.available_timezones() | {UTC_NAME})


def is_valid_time_zone(name: str) -> bool:
    """Any name the tz database can load: what a stored order may carry (older rules allowed links).
    New input is checked against is_selectable."""
    return name in _loadable_names()
