"""Malformed, oversized and mistyped request bodies are a clean 4xx JSON answer on every write endpoint."""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from orders.models import Order
from tests.security.conftest import make_order

pytestmark = pytest.mark.django_db

NESTING = 100_000
MALFORMED: list[tuple[str, bytes]] = [
    ("not json", b"{not json"),
    ("truncated", b'{"order_name": "x", '),
    ("single quotes", b"{'order_name': 'x'}"),
    ("nan", b'{"order_name": "x", "schedule_time": "2030-01-01T00:00:00Z", "max_executions": NaN}'),
    ("infinity", b'{"order_name": "x", "max_executions": Infinity}'),
    ("minus infinity", b'{"order_name": "x", "max_executions": -Infinity}'),
    ("nested arrays", b"[" * NESTING),
    ("balanced nested arrays", b"[" * NESTING + b"]" * NESTING),
    ("nested objects", b'{"a":' * NESTING),
    ("balanced nested objects", b'{"a":' * NESTING + b"1" + b"}" * NESTING),
    ("invalid utf-8", b'{"order_name": "\xff\xfe\xfa"}'),
    ("lone surrogate bytes", b'{"order_name": "\xed\xa0\x80"}'),
    ("100k-digit integer", b'{"order_name": "x", "max_executions": ' + b"9" * 100_000 + b"}"),
    ("trailing garbage", b'{"order_name": "x"} {"order_name": "y"}'),
]
NOT_AN_OBJECT: list[tuple[str, bytes]] = [
    ("array", b'[{"order_name": "x"}]'),
    ("string", b'"order"'),
    ("number", b"42"),
    ("null", b"null"),
    ("true", b"true"),
]
WRITE_ENDPOINTS = [("post", "/api/orders/"), ("post", "/api/orders/create/"), ("put", "{order}"), ("patch", "{order}")]


def _send(client: Any, method: str, path: str, body: bytes, content_type: str = "application/json") -> Any:
    # Any: the stubs type the body as str, but raw bytes are the point here.
    return client.generic(method.upper(), path, body, content_type=content_type)


class EndlessBody:
    """A request body produced on demand that counts how much of it the server read."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.bytes_read = 0

    def read(self, n: int = -1) -> bytes:
        left = self.size - self.bytes_read
        n = left if n is None or n < 0 else min(n, left)
        chunk = (b'{"order_name": "' + b"x" * n)[:n] if self.bytes_read == 0 else b"x" * n
        self.bytes_read += n
        return chunk

    def readline(self, *args: Any) -> bytes:
        return self.read(*args)


@pytest.fixture
def order_url(alice: Any) -> str:
    return f"/api/orders/{make_order(alice).pk}/"


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize(("label", "body"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_json_is_a_400_parse_error(
    alice_api: APIClient, order_url: str, method: str, path: str, label: str, body: bytes, settings: Any
) -> None:
    # Room for the 100,000-deep documents, so that the parser (not the size limit) meets them.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * 1024 * 1024
    response = _send(alice_api, method, path.format(order=order_url), body)
    assert response.status_code == 400, (label, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["detail"].startswith("JSON parse error")
    assert Order.objects.count() == 1


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize(("label", "body"), NOT_AN_OBJECT, ids=[m[0] for m in NOT_AN_OBJECT])
def test_json_that_is_not_an_object_is_a_400(
    alice_api: APIClient, order_url: str, method: str, path: str, label: str, body: bytes
) -> None:
    response = _send(alice_api, method, path.format(order=order_url), body)
    assert response.status_code == 400, (label, response.status_code, response.content[:300])
    assert "non_field_errors" in response.json()


@pytest.mark.parametrize(("method", "path"), WRITE_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "application/xml",
        "application/json-patch+json",
        "",
    ],
)
def test_a_body_that_is_not_json_is_a_415(
    alice_api: APIClient, order_url: str, method: str, path: str, content_type: str
) -> None:
    body = b"order_name=x&schedule_time=2030-01-01T00:00:00Z"
    response = _send(alice_api, method, path.format(order=order_url), body, content_type=content_type)
    assert response.status_code == 415, (content_type, response.status_code, response.content[:300])
    assert "detail" in response.json()
    assert Order.objects.count() == 1


@pytest.mark.parametrize("body", [b"[" * NESTING, b'{"a":' * NESTING + b"1" + b"}" * NESTING])
def test_a_deep_document_over_the_default_limit_is_a_413(alice_api: APIClient, body: bytes) -> None:
    assert len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    response = _send(alice_api, "post", "/api/orders/", body)
    assert response.status_code == 413, response.content[:300]
    assert "larger than" in response.json()["detail"]


def test_an_unknown_charset_is_a_4xx(alice_api: APIClient) -> None:
    response = _send(alice_api, "post", "/api/orders/", b'{"order_name": "x"}', "application/json; charset=bz2_codec")
    assert response.status_code in (400, 415), response.content[:300]
    assert "detail" in response.json()


def test_a_body_over_the_limit_is_a_413_without_reading_it(alice_api: APIClient) -> None:
    body = EndlessBody(50 * 1024 * 1024)
    tracemalloc.start()
    try:
        client: Any = alice_api
        response = client.generic(
            "POST",
            "/api/orders/",
            content_type="application/json",
            CONTENT_LENGTH=str(body.size),
            **{"wsgi.input": body},
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status_code == 413, response.content[:300]
    assert response.json()["detail"] == f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
    assert body.bytes_read == 0
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes while refusing a 50 MB body"
    assert not Order.objects.exists()


def test_a_body_just_under_the_limit_is_parsed(alice_api: APIClient, settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = b'{"order_name": "' + b"x" * 255 + b'", "padding": "' + b" " * 1500 + b'"}'
    assert len(body) < 2048
    response = _send(alice_api, "post", "/api/orders/", body)
    # Parsed (then rejected for the missing time): the size check did not get in the way.
    assert response.status_code == 400
    assert "schedule_time" in response.json()
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 256
    assert _send(alice_api, "post", "/api/orders/", body).status_code == 413


@pytest.mark.parametrize("path", ["/api/orders/{id}/pause/", "/api/orders/{id}/run-now/"])
def test_actions_ignore_a_garbage_body(alice: Any, alice_api: APIClient, path: str) -> None:
    # Actions take no input: a junk body must neither break them nor be read.
    order = make_order(alice)
    response = _send(alice_api, "post", path.format(id=order.pk), b"[" * NESTING, "text/plain")
    assert response.status_code in (200, 202), response.content[:300]


AUTH_WRITES = [
    ("post", "/api/auth/signup"),
    ("post", "/api/auth/login"),
    ("post", "/api/auth/refresh"),
    ("post", "/api/auth/logout"),
    ("patch", "/api/auth/me"),
]
HOSTILE_BODIES: list[tuple[str, bytes, str, tuple[int, ...]]] = [
    ("not json", b"{not json", "application/json", (400,)),
    ("nested", b"[" * 50_000, "application/json", (400,)),
    ("array", b"[1, 2]", "application/json", (400,)),
    ("nan", b'{"email": NaN}', "application/json", (400,)),
    ("form", b"email=a%40b.c&password=x", "application/x-www-form-urlencoded", (415,)),
    ("too large", b'{"email": "' + b"a" * 100_000 + b'"}', "application/json", (413,)),
]


@pytest.mark.parametrize(("method", "path"), AUTH_WRITES)
@pytest.mark.parametrize(
    ("label", "body", "content_type", "expected"), HOSTILE_BODIES, ids=[b[0] for b in HOSTILE_BODIES]
)
def test_the_auth_api_answers_hostile_bodies_with_a_4xx(
    alice_api: APIClient, method: str, path: str, label: str, body: bytes, content_type: str, expected: tuple[int, ...]
) -> None:
    # The same parser serves the whole API, so the auth endpoints get the same clean answers.
    response = _send(alice_api, method, path, body, content_type)
    assert response.status_code in expected, (label, response.status_code, response.content[:300])
    assert "detail" in response.json() or "non_field_errors" in response.json()
