"""Production settings, for real: `check --deploy` in a subprocess, and the real web server (scripts/web) with DEBUG off
behind a (simulated) TLS proxy: HSTS, HTTPS redirect, secure cookies, and errors that reveal nothing."""

from __future__ import annotations

import http.client
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from rest_framework_simplejwt.tokens import AccessToken

from tests import processes
from tests.conftest import make_user
from tests.processes import ROOT, Stack, for_production_like, free_port, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SECRET_KEY = secrets.token_urlsafe(64)


def _production_env(**extra: str) -> dict[str, str]:
    from django.conf import settings

    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS")}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "scheduler_site.settings",
            "DEBUG": "false",
            "SECRET_KEY": SECRET_KEY,
            "ALLOWED_HOSTS": "scheduler.example.com,127.0.0.1",
            # Through the module: imported by name, pytest would collect test_database_url as a test.
            "DATABASE_URL": processes.test_database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "LOG_DIR": str(settings.LOG_DIR),
        }
    )
    env.update(extra)
    return for_production_like(env)


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_is_clean_with_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_catches_a_weak_secret_key() -> None:
    # The check above is only worth something if it fails on a real mistake.
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env(SECRET_KEY="short"))
    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def static_root(tmp_path_factory: pytest.TempPathFactory, django_db_setup: Any, django_db_blocker: Any) -> Path:
    # DEBUG off serves hashed files from a manifest, which only collectstatic writes.
    root = tmp_path_factory.mktemp("static")
    with django_db_blocker.unblock():
        env = _production_env(STATIC_ROOT=str(root))
    result = _manage("collectstatic", "--noinput", "-v0", env=env)
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def production(
    tmp_path_factory: pytest.TempPathFactory, static_root: Path, django_db_setup: Any, django_db_blocker: Any
) -> Iterator[Stack]:
    with django_db_blocker.unblock():
        env = _production_env(STATIC_ROOT=str(static_root), BEHIND_TLS_PROXY="true")
        with running_stack(tmp_path_factory.mktemp("prod"), workers=0, scheduler=False, **_overrides(env)) as stack:
            yield stack


def _get(stack: Stack, path: str, *, https: bool = True, **headers: str) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=10)
    sent = {"Host": "scheduler.example.com", **({"X-Forwarded-Proto": "https"} if https else {}), **headers}
    conn.request("GET", path, headers=sent)
    response = conn.getresponse()
    body = response.read().decode(errors="replace")
    found = {k.lower(): v for k, v in response.getheaders()}
    found["set-cookie"] = "\n".join(v for k, v in response.getheaders() if k.lower() == "set-cookie")
    conn.close()
    return response.status, found, body


def test_production_pages_send_hsts_and_the_other_headers(production: Stack) -> None:
    status, headers, body = _get(production, "/login")
    assert status == 200, body[:500]
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["x-frame-options"] == "DENY"
    assert "default-src 'self'" in headers["content-security-policy"]
    csrf_cookie = next(c for c in headers["set-cookie"].split("\n") if c.startswith("csrftoken="))
    assert "Secure" in csrf_cookie and "SameSite=Lax" in csrf_cookie
    # Static files come from the app itself, hashed by the manifest.
    assert "/static/css/app." in body


def test_production_api_sends_the_headers_too(production: Stack) -> None:
    status, headers, _ = _get(production, "/api/orders/")
    assert status == 401
    assert headers["content-type"].startswith("application/json")
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-content-type-options"] == "nosniff"


def test_production_redirects_plain_http_to_https(production: Stack) -> None:
    status, headers, _ = _get(production, "/login", https=False)
    assert status == 301
    assert headers["location"] == "https://scheduler.example.com/login"


@pytest.mark.parametrize(("path", "host"), [("/no-such-page", "scheduler.example.com"), ("/login", "evil.example.com")])
def test_production_errors_reveal_nothing(production: Stack, path: str, host: str) -> None:
    status, _, body = _get(production, path, Host=host)
    assert status in (400, 404)
    for leak in ("Traceback", "URLconf", "ALLOWED_HOSTS", "DisallowedHost", "DEBUG", "scheduler_site"):
        assert leak not in body


def _overrides(env: dict[str, str]) -> dict[str, Any]:
    return {k: env[k] for k in ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "STATIC_ROOT", "BEHIND_TLS_PROXY")}


LEAKS = (
    "Traceback",
    "ValueError",
    "OperationalError",
    'File "',
    "mysql",
    "nothing",
    "manifest",
    "scheduler_site",
    "settings",
)


def test_a_crash_with_debug_off_shows_no_stack_trace(tmp_path: Path) -> None:
    # Deployed without collectstatic: every page that names a static file raises inside the template.
    empty = tmp_path / "no-static"
    empty.mkdir()
    env = _production_env(STATIC_ROOT=str(empty), BEHIND_TLS_PROXY="true")
    with running_stack(tmp_path, workers=0, scheduler=False, **_overrides(env)) as stack:
        status, _, body = _get(stack, "/login")
        assert status == 500
        assert "Server Error (500)" in body
        for leak in LEAKS:
            assert leak not in body
        assert "Traceback" in stack.read_log("web")  # the operator still gets the details, in the log


def test_an_unreachable_database_is_a_plain_503_with_debug_off(tmp_path: Path, static_root: Path) -> None:
    user = make_user()
    # Signed with the production process's key, so that only the database can make it fail.
    token = jwt.encode(dict(AccessToken.for_user(user).payload), SECRET_KEY, algorithm="HS256")
    dead = f"mysql://root@127.0.0.1:{free_port()}/nothing"
    env = _production_env(STATIC_ROOT=str(static_root), BEHIND_TLS_PROXY="true")
    with running_stack(tmp_path, workers=0, scheduler=False, DATABASE_URL=dead, **_overrides(env)) as stack:
        status, _, body = _get(stack, "/orders/", Cookie="sessionid=abcdefghijklmnopqrstuvwxyz012345")
        assert status == 503
        assert "Temporarily unavailable" in body
        for leak in LEAKS:
            assert leak not in body
        status, headers, body = _get(stack, "/api/orders/", Authorization=f"Bearer {token}")
        assert status == 503, body[:300]
        assert headers["content-type"].startswith("application/json")
        assert headers["retry-after"] == "5"
        for leak in LEAKS:
            assert leak not in body


def test_production_serves_the_api_docs_from_the_app(production: Stack) -> None:
    status, _, body = _get(production, "/api/docs/")
    assert status == 200, body[:500]
    assert "cdn." not in body and "<script>" not in body and "<style>" not in body
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle." in body
    status, headers, _ = _get(production, "/api/docs/?script=")
    assert status == 200
    assert headers["content-type"].startswith("application/javascript")


def test_production_refuses_a_huge_body_before_reading_it(production: Stack) -> None:
    # 100 MB announced, a few bytes sent: the answer must come at once, without waiting for the rest.
    user = make_user()
    token = jwt.encode(dict(AccessToken.for_user(user).payload), SECRET_KEY, algorithm="HS256")
    with socket.create_connection(("127.0.0.1", production.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/orders/ HTTP/1.1\r\nHost: scheduler.example.com\r\nX-Forwarded-Proto: https\r\n"
            + f"Authorization: Bearer {token}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100000000\r\n\r\n"
            + b'{"order_name": "'
        )
        started = time.monotonic()
        reply = ""
        while "larger than" not in reply and time.monotonic() - started < 5:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk.decode(errors="replace")
    assert reply.startswith("HTTP/1.1 413"), reply[:300]
    assert "larger than" in reply
    assert time.monotonic() - started < 5
