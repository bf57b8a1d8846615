"""What one API request costs in round trips: SQL statements (Django's CaptureQueriesContext) and
Redis commands (a real MONITOR on the test Redis, so every client of the process is seen).

Authentication reads no row, a create writes one INSERT that already carries its job id, a list is a
page and a count (issue 17)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.auth_state import user_state_key
from accounts.selectors import user_get_by_id
from accounts.services import user_logout_all
from tests.accounts.helpers import bearer, login
from tests.conftest import api_client_for, make_user

pytestmark = pytest.mark.django_db(transaction=True)

_START, _END = "query-count-start", "query-count-end"


@contextmanager
def redis_commands() -> Iterator[list[str]]:
    """The Redis commands (names, upper case) sent by anyone while the block runs, read from MONITOR."""
    monitor_client = redis.Redis.from_url(settings.REDIS_URL)
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as monitor:
            ready.set()
            recording = False
            for event in monitor.listen():
                command = str(event["command"])
                if _START in command:
                    recording = True
                elif _END in command:
                    return
                elif recording:
                    seen.append(command.split(" ", 1)[0].upper())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert ready.wait(5)
    marker = redis.Redis.from_url(settings.REDIS_URL)
    marker.echo(_START)
    try:
        yield seen
    finally:
        marker.echo(_END)
        watcher.join(5)
        assert not watcher.is_alive(), "MONITOR never saw the end marker"


def _sql(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries]


def test_an_authenticated_request_reads_no_row_and_makes_one_redis_round_trip() -> None:
    user = make_user()
    client = bearer(login(user.email)["access"])
    assert client.get("/api/auth/me").status_code == 200  # the first request may read the row once

    with CaptureQueriesContext(connection) as queries, redis_commands() as commands:
        response = client.get("/api/auth/me")

    assert response.status_code == 200 and response.json()["email"] == user.email
    assert _sql(queries) == []
    assert commands == ["MGET"]


def test_logout_all_is_seen_by_the_next_request_without_a_database_read() -> None:
    user = make_user()
    device = login(user.email)
    assert bearer(device["access"]).get("/api/auth/me").status_code == 200

    user_logout_all(user=user)

    with CaptureQueriesContext(connection) as queries:
        refused = bearer(device["access"]).get("/api/auth/me")
    assert refused.status_code == 401
    assert _sql(queries) == []


def test_a_reader_holding_the_row_from_before_a_logout_all_cannot_put_it_back() -> None:
    """The copy is only ever added (SET NX) by a reader: a save's own write wins over an older read."""
    user = make_user()
    device = login(user.email)
    before = user_get_by_id(user.pk)  # a request that read the row just before the change

    user_logout_all(user=user)
    assert cache.add(user_state_key(user.pk), before) is False
    assert bearer(device["access"]).get("/api/auth/me").status_code == 401


def test_a_missing_copy_is_read_from_the_database_not_trusted() -> None:
    user = make_user()
    client = api_client_for(user)
    assert client.get("/api/auth/me").status_code == 200
    cache.delete(user_state_key(user.pk))
    type(user).objects.filter(pk=user.pk).update(is_active=False)  # behind the copy's back, then no copy

    response = client.get("/api/auth/me")
    assert response.status_code == 401
