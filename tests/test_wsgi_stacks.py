"""The WSGI application the web server runs: /api/ through the API-only middleware, pages through all."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import pytest
from django.test.client import RequestFactory

from tests.conftest import make_user

pytestmark = pytest.mark.django_db(transaction=True)


def _call(path: str, **headers: str) -> tuple[str, dict[str, str], bytes]:
    from scheduler_site.wsgi import application

    factory: Any = RequestFactory()  # its WSGI environ, for a call to the application itself
    environ = factory._base_environ(PATH_INFO=path, REQUEST_METHOD="GET", **headers)
    environ["wsgi.input"] = BytesIO(b"")
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = status, dict(response_headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_an_api_answer_keeps_its_headers_without_the_page_middleware() -> None:
    from rest_framework_simplejwt.tokens import AccessToken

    user = make_user()
    status, headers, body = _call("/api/orders/", HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(user)}")

    assert status.startswith("200")
    assert json.loads(body) == {"count": 0, "next": None, "previous": None, "results": []}
    assert "no-store" in headers["Cache-Control"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" in headers and headers["X-Frame-Options"] == "DENY"
    assert "Set-Cookie" not in headers


def test_a_page_still_runs_the_full_stack() -> None:
    status, headers, _ = _call("/login")
    assert status.startswith("200")
    assert "csrftoken" in headers.get("Set-Cookie", "")
