"""Fixtures for the fault suite: a private Redis per test, the recording executor, a Stack of real
processes configured for fast recovery, and a sampler of the always-true invariants.

Every test here uses @pytest.mark.django_db(transaction=True): the child processes must see the
rows the test writes, so nothing may stay inside a test transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from rest_framework_simplejwt.tokens import AccessToken

from orders import jobqueue
from tests.conftest import make_user
from tests.faults.executors import effects_path
from tests.faults.harness import Api, RedisServer
from tests.faults.invariants import LimitSampler
from tests.processes import Stack

# Fast-recovery settings for the child processes. A killed worker's attempts are taken back once
# its heartbeat is gone (seconds, whatever these say); the lease, the last resort for a live worker
# whose outcome could not be recorded (a database cut), is the job timeout
# (ORDER_EXECUTION_TIMEOUT_SECONDS + ORDER_JOB_TIMEOUT_MARGIN_SECONDS) plus 5 s: 20 s here, 65 s by default.
FAULT_ENV: dict[str, str] = {
    "ORDER_EXECUTOR": "tests.faults.executors.record",
    "ORDER_EXECUTION_TIMEOUT_SECONDS": "5",
    "ORDER_JOB_TIMEOUT_MARGIN_SECONDS": "10",
    "ABANDONED_CHECK_EVERY_SECONDS": "1",
    "RECONCILE_EVERY_SECONDS": "10",
    "ORDER_RETRY_BASE_DELAY_SECONDS": "1",
    "ORDER_MISFIRE_GRACE_SECONDS": "1",
    "RQ_LOG_LEVEL": "WARNING",
}


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test alone; the test process and its Stack both point at it."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    # The test process reaches Redis through django-rq's configuration (orders/jobqueue.py), read
    # from this dict: point it at the private server too, with the same client options.
    queue = settings.RQ_QUEUES[settings.ORDER_QUEUE]
    shared_url, shared_queue_url = settings.REDIS_URL, queue["URL"]
    options = [o for o in urlsplit(shared_queue_url).query.split("&") if o and not o.startswith("db=")]
    settings.REDIS_URL = server.url
    queue["URL"] = f"{server.url}?{'&'.join(options)}"
    jobqueue.reset_connection()
    try:
        yield server
    finally:
        settings.REDIS_URL, queue["URL"] = shared_url, shared_queue_url
        jobqueue.reset_connection()
        server.kill()


@pytest.fixture
def stacks(tmp_path: Path, private_redis: RedisServer) -> Iterator[Callable[..., Stack]]:
    """make_stack(**env) -> a Stack on the private Redis with FAULT_ENV (plus overrides)."""
    effects_path().write_text("")
    made: list[Stack] = []

    def make_stack(**env: Any) -> Stack:
        stack = Stack(tmp_path, **{**FAULT_ENV, "REDIS_URL": private_redis.url, **env})
        made.append(stack)
        return stack

    yield make_stack
    for stack in made:
        stack.stop_all()


@pytest.fixture
def sampler() -> Iterator[LimitSampler]:
    with LimitSampler() as running:
        yield running


@pytest.fixture
def owner(db: Any) -> Any:
    return make_user()


def api_for(stack: Stack, user: Any) -> Api:
    return Api(stack.base_url, str(AccessToken.for_user(user)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    path = Path(settings.LOG_DIR) / "fault-measurements.jsonl"
    if not path.exists():
        return
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if lines:
        terminalreporter.section("fault measurements")
        for entry in lines:
            scenario = entry.pop("scenario")
            entry.pop("at", None)
            terminalreporter.write_line(f"{scenario}: {entry}")


@pytest.fixture(scope="session", autouse=True)
def _fresh_measurements() -> None:
    (Path(settings.LOG_DIR) / "fault-measurements.jsonl").unlink(missing_ok=True)
