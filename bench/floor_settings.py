"""The project's settings (same database, Redis, CONN_MAX_AGE) without middleware: see bench/floor.py."""

from scheduler_site.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor"
MIDDLEWARE = []
