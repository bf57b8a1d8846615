"""Shared fixtures: real MariaDB (or the embedded SQLite) and a real Redis DB index, flushed per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test.utils import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from orders import jobqueue

_emails = itertools.count(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked `mysql` needs MySQL/MariaDB: on the embedded SQLite default it is skipped, and the
    reason says why and where it runs instead."""
    if settings.DATABASES["default"]["ENGINE"].endswith("mysql"):
        return
    for item in items:
        marker = item.get_closest_marker("mysql")
        if marker is not None:
            why = marker.kwargs.get("reason", "marked mysql")
            where = "runs with DATABASE_URL=mysql://..., as in .ci/run's MariaDB pass"
            item.add_marker(pytest.mark.skip(reason=f"needs MySQL/MariaDB ({why}); {where}"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the embedded redis-server of the test session (var/test-redis/, started when the settings
    were loaded; see settings.py), so that `make test` leaves no process behind. A `make run`'s server
    (var/redis/) is another one and stays up."""
    if settings.REDIS_EMBEDDED:
        from scheduler_site.embedded_redis import stop_embedded_redis

        stop_embedded_redis(settings.VAR_DIR, settings.EMBEDDED_REDIS_NAME, wait=10)


@pytest.fixture(autouse=True, scope="session")
def _no_dns_for_webhooks() -> None:
    """Test traffic goes only to 127.0.0.0/8, and this machine's DNS server is elsewhere: in the test
    process and every process it starts (tests/processes.py passes the environment on), a webhook
    target's host is never looked up over DNS (tests/webhooks/resolvers.py: IP literals only) and
    never reached outside the loopback (WEBHOOK_EGRESS_NETWORKS)."""
    resolver = "tests.webhooks.resolvers.no_dns_resolver"
    os.environ["WEBHOOK_RESOLVER"] = resolver
    settings.WEBHOOK_RESOLVER = resolver
    # And no target outside the loopback is ever called, even one written as a public IP address
    # (a fuzzer's PATCH followed by a test delivery, say).
    os.environ["WEBHOOK_EGRESS_NETWORKS"] = "127.0.0.0/8"
    settings.WEBHOOK_EGRESS_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture(autouse=True, scope="session")
def _fast_password_hasher() -> Iterator[None]:
    """Every test user's password is hashed with the cheap MD5 hasher (FAST_PASSWORD_HASHER, see
    settings.py), in the test process and in every process it starts (tests/processes.py passes the
    environment on), whether or not the caller exported it: Django's PBKDF2 costs about 0.3 s of CPU
    per sign-up, login or make_user() here, and the suite does thousands. No test is about the
    hasher's cost; what a hash is checked against (right, wrong, unknown email) is the same. A process
    started with DEBUG off, as production runs, goes without it (settings.py refuses it there;
    tests/processes.py, for_production_like)."""
    previous = os.environ.get("FAST_PASSWORD_HASHER")
    os.environ["FAST_PASSWORD_HASHER"] = "true"
    # override_settings sends setting_changed, which clears django.contrib.auth's cached hashers.
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield
    if previous is None:
        os.environ.pop("FAST_PASSWORD_HASHER", None)
    else:
        os.environ["FAST_PASSWORD_HASHER"] = previous


@pytest.fixture(autouse=True, scope="session")
def _private_log_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Unless LOG_DIR is given explicitly, each test session writes its own order log, so two runs on
    one machine never clear each other's; child processes (tests/processes.py) inherit it."""
    if os.environ.get("LOG_DIR"):
        return
    log_dir = tmp_path_factory.mktemp("logs")
    settings.LOG_DIR = log_dir
    settings.ORDER_LOG_FILE = log_dir / "orders.log"


@pytest.fixture(autouse=True)
def _clean_redis_and_log(_private_log_dir: None) -> Iterator[None]:
    conn = jobqueue.connection()
    conn.flushdb()
    settings.ORDER_LOG_FILE.parent.mkdir(parents=True, exist_ok=True)
    settings.ORDER_LOG_FILE.write_text("")
    yield
    conn.flushdb()


def make_user(email: str | None = None, password: str = "correct-horse-battery-9", **extra: Any) -> Any:
    from accounts.models import User

    email = email or f"user{next(_emails)}@example.com"
    return User.objects.create_user(email=email, password=password, **extra)


@pytest.fixture
def alice(db: Any) -> Any:
    return make_user("alice@example.com")


@pytest.fixture
def bob(db: Any) -> Any:
    return make_user("bob@example.com")


def api_client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")
    return client


@pytest.fixture
def alice_api(alice: Any) -> APIClient:
    return api_client_for(alice)


@pytest.fixture
def bob_api(bob: Any) -> APIClient:
    return api_client_for(bob)
