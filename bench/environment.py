"""The benchmark's own database and Redis, and where its files go (used by `python -m bench` and
`python -m bench.ratio`).

  BENCH_DATABASE_URL (default mysql://root@127.0.0.1:3306/scheduler_bench; created if missing)
  BENCH_REDIS_URL    (default redis://127.0.0.1:6379/14; this whole index is flushed)
It runs the processes as production would (DEBUG off, a throw-away SECRET_KEY, no HTTPS redirect
because wrk speaks plain HTTP on the loopback).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = ROOT / "var" / "bench"
RESULTS_DIR = ROOT / "bench" / "results"


def bench_env() -> dict[str, str]:
    database_url = os.environ.get("BENCH_DATABASE_URL", "mysql://root@127.0.0.1:3306/scheduler_bench")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "scheduler_site.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY", secrets.token_urlsafe(48)),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_DIR": str(WORK_DIR / "logs"),
            "VAR_DIR": str(WORK_DIR / "var"),
            # The webhook scenario's receiver listens on the loopback (bench/webhooks.py).
            "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
            # Tokens are minted once and must outlive a full run.
            "ACCESS_TOKEN_LIFETIME_SECONDS": "86400",
        }
    )
    env.pop("TEST_DATABASE_NAME", None)
    # A test-only setting, refused with DEBUG off (.ci/run exports it for the suite).
    env.pop("FAST_PASSWORD_HASHER", None)
    return env


def _create_database(url: str) -> None:
    parsed = urlparse(url)
    if not parsed.scheme.startswith("mysql"):
        return
    import MySQLdb

    conn = MySQLdb.connect(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 3306,
        user=parsed.username or "root",
        password=parsed.password or "",
    )
    try:
        name = parsed.path.lstrip("/")
        conn.cursor().execute(
            f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )
    finally:
        conn.close()


def setup(env: dict[str, str]) -> None:
    """Point this process at the benchmark's database and Redis, migrate, flush the Redis index."""
    os.environ.update(env)
    _create_database(env["DATABASE_URL"])
    import django

    django.setup()
    from django.core.management import call_command

    from orders import jobqueue

    call_command("migrate", verbosity=0, interactive=False)
    jobqueue.connection().flushdb()
