"""Security headers on every response, and errors that reveal nothing, in this process (DEBUG off).

pytest-django runs requests with DEBUG False; the production settings themselves (HSTS, HTTPS
redirect, secure cookies, check --deploy) are exercised in test_deployment.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.security.error_urls import SECRET_IN_TRACEBACK

pytestmark = pytest.mark.django_db

PAGES = ["/login", "/signup", "/orders/", "/orders/new", "/notifications/", "/account"]
API = ["/api/orders/", "/api/notifications/", "/api/schema/", "/api/auth/me"]


def _assert_security_headers(response: Any) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    csp = response["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_the_security_headers(alice: Any, path: str) -> None:
    client = Client()
    if path not in ("/login", "/signup"):  # those two send a signed-in user away
        client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 200
    _assert_security_headers(response)


@pytest.mark.parametrize("path", API)
@pytest.mark.parametrize("signed_in", [True, False])
def test_api_responses_carry_the_security_headers(alice_api: APIClient, path: str, signed_in: bool) -> None:
    client = alice_api if signed_in else APIClient()
    response = client.get(path)
    assert response.status_code in (200, 401)
    _assert_security_headers(response)


def test_a_crashing_page_shows_the_plain_500_page(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.security.error_urls"
    assert settings.DEBUG is False
    response = Client(raise_request_exception=False).get("/crash")
    assert response.status_code == 500
    html = response.content.decode()
    assert "Server Error (500)" in html
    for leak in (SECRET_IN_TRACEBACK, "Traceback", "RuntimeError", "settings", "error_urls"):
        assert leak not in html
    _assert_security_headers(response)


def test_a_crashing_api_view_answers_plain_json(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.security.error_urls"
    response = APIClient(raise_request_exception=False).get("/api/crash")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Internal server error."}


@pytest.mark.parametrize("path", ["/no-such-page", "/orders/abc/nothing/here", "/static/../settings.py"])
def test_not_found_pages_reveal_no_urlconf(alice: Any, path: str) -> None:
    client = Client()
    client.force_login(alice)
    response = client.get(path)
    assert response.status_code == 404
    html = response.content.decode()
    assert "URLconf" not in html and "Traceback" not in html and "scheduler_site" not in html


API_PATHS_THAT_MATCH_NOTHING = [
    "/api/nothing",
    "/api/orders/1/nothing",
    "/api/%00",
    "/api/orders/0",
    "/api/orders/99999999999999999999/pause",
    "/api/notifications//read",
]


@pytest.mark.parametrize("path", API_PATHS_THAT_MATCH_NOTHING)
def test_unknown_api_paths_are_a_json_404(alice_api: APIClient, path: str) -> None:
    response = alice_api.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("path", API_PATHS_THAT_MATCH_NOTHING)
def test_unknown_api_paths_are_a_json_404_with_debug_on_too(alice_api: APIClient, settings: Any, path: str) -> None:
    """With DEBUG on Django answers an unmatched path with its HTML debug page, not handler404: the
    API's catch-all keeps the answer JSON (schemathesis runs the server that way)."""
    settings.DEBUG = True
    response = alice_api.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}


@pytest.mark.parametrize("path", API_PATHS_THAT_MATCH_NOTHING)
def test_a_post_without_credentials_to_an_unknown_api_path_is_a_json_404_not_a_csrf_403(path: str) -> None:
    response = APIClient(enforce_csrf_checks=True).post(path, {})
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_a_forged_host_header_is_a_plain_400() -> None:
    response = Client().get("/login", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    body = response.content.decode()
    assert "ALLOWED_HOSTS" not in body and "DisallowedHost" not in body


@pytest.mark.parametrize(("method", "path"), [("put", "/api/orders/"), ("get", "/api/orders/create/")])
def test_a_wrong_method_is_a_405(alice_api: APIClient, method: str, path: str) -> None:
    response = getattr(alice_api, method)(path)
    assert response.status_code == 405
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("path", "accept", "status"),
    [
        ("/api/orders/?format=xml", "application/json", 404),
        ("/api/orders/", "text/html", 406),
        ("/api/orders/", "application/xml", 406),
        ("/api/orders/", "*/*;q=abc", 200),
    ],
)
def test_content_negotiation_oddities_are_answered_in_json(
    alice_api: APIClient, path: str, accept: str, status: int
) -> None:
    response = alice_api.get(path, HTTP_ACCEPT=accept)
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")


def test_a_requested_indent_cannot_inflate_responses(alice: Any, alice_api: APIClient) -> None:
    for n in range(5):
        alice_api.post("/api/orders/", {"order_name": f"o{n}", "schedule_time": "2031-01-01T00:00:00Z"}, format="json")
    compact = len(alice_api.get("/api/orders/").content)
    indented = len(alice_api.get("/api/orders/", HTTP_ACCEPT="application/json; indent=99999999").content)
    assert indented < compact * 3  # DRF caps the indent at 8


def test_trace_is_not_allowed(alice_api: APIClient) -> None:
    response = alice_api.generic("TRACE", "/api/orders/")
    assert response.status_code == 405


def test_the_policy_header_is_the_one_django_csp_builds_and_follows_the_settings(alice: Any) -> None:
    """StaticPolicyCSPMiddleware builds the text once; it is django-csp's text, and a changed setting
    (report-only included) changes it."""
    from csp.utils import build_policy
    from django.test import override_settings

    client = APIClient()
    client.force_authenticate(alice)
    response = client.get("/api/orders/")
    assert response["Content-Security-Policy"] == build_policy()
    assert "Content-Security-Policy-Report-Only" not in response

    stricter = {"DIRECTIVES": {"default-src": ["'none'"]}}
    with override_settings(CONTENT_SECURITY_POLICY=stricter, CONTENT_SECURITY_POLICY_REPORT_ONLY=stricter):
        changed = client.get("/api/orders/")
    assert changed["Content-Security-Policy"] == "default-src 'none'"
    assert changed["Content-Security-Policy-Report-Only"] == "default-src 'none'"
    assert client.get("/api/orders/")["Content-Security-Policy"] == build_policy()
