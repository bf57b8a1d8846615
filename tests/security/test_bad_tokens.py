"""Every orders endpoint refuses a missing, malformed, forged, expired or revoked token with a 401.

The auth API's own token tests live in tests/accounts/; here the same bad tokens meet the orders and
notifications endpoints, and nothing they ask for happens.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from orders.models import Notification, Order
from tests.conftest import make_user
from tests.security.conftest import ORDER_ENDPOINTS, make_order, valid_payload

pytestmark = pytest.mark.django_db

ENDPOINTS: list[tuple[str, str]] = [
    ("get", "/api/orders/"),
    ("post", "/api/orders/"),
    ("post", "/api/orders/create/"),
    *ORDER_ENDPOINTS,
    ("get", "/api/notifications/"),
    ("post", "/api/notifications/{note}/read/"),
]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user: Any) -> dict[str, Any]:
    return dict(AccessToken.for_user(user).payload)


def _signed(payload: dict[str, Any], key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(payload, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm)


def _tampered(user: Any) -> str:
    # A valid token of the owner with the payload swapped for one naming another user.
    header, _payload, signature = str(AccessToken.for_user(user)).split(".")
    return f"Bearer {header}.{_b64({**_claims(user), 'user_id': str(user.pk + 1000)})}.{signature}"


def _alg_none(user: Any) -> str:
    return f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."


def _expired(user: Any) -> str:
    token = AccessToken.for_user(user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    return f"Bearer {token}"


def _refresh_as_access(user: Any) -> str:
    return f"Bearer {RefreshToken.for_user(user)}"


def _deleted_user(user: Any) -> str:
    ghost = make_user()
    token = AccessToken.for_user(ghost)
    ghost.delete()
    return f"Bearer {token}"


def _inactive_user(user: Any) -> str:
    user.is_active = False
    user.save(update_fields=["is_active"])
    return f"Bearer {AccessToken.for_user(user)}"


BAD_AUTHORIZATION: dict[str, Callable[[Any], str | None]] = {
    "missing": lambda user: None,
    "empty": lambda user: "",
    "bearer without token": lambda user: "Bearer",
    "bearer with spaces": lambda user: "Bearer a b",
    "not a jwt": lambda user: "Bearer not-a-token",
    "three garbage parts": lambda user: "Bearer a.b.c",
    "basic": lambda user: "Basic " + base64.b64encode(b"alice@example.com:correct-horse-battery-9").decode(),
    "token scheme": lambda user: f"Token {AccessToken.for_user(user)}",
    "lower-case scheme": lambda user: f"bearer{AccessToken.for_user(user)}",
    "tampered payload": _tampered,
    "alg none": _alg_none,
    "wrong key": lambda user: f"Bearer {_signed(_claims(user), key='not-the-key-' * 4)}",
    "HS512 with the right key": lambda user: f"Bearer {_signed(_claims(user), algorithm='HS512')}",
    "expired": _expired,
    "refresh token as access": _refresh_as_access,
    "no user claim": lambda user: f"Bearer {_signed({k: v for k, v in _claims(user).items() if k != 'user_id'})}",
    "no jti": lambda user: f"Bearer {_signed({k: v for k, v in _claims(user).items() if k != 'jti'})}",
    "non-numeric user id": lambda user: f"Bearer {_signed({**_claims(user), 'user_id': 'abc'})}",
    "deleted user": _deleted_user,
    "inactive user": _inactive_user,
    "nul in header": lambda user: f"Bearer {AccessToken.for_user(user)}\x00",
    "huge header": lambda user: "Bearer " + "a" * 20_000,
}


def _request(client: APIClient, method: str, url: str) -> Any:
    if method in ("post", "put", "patch"):
        return getattr(client, method)(url, valid_payload(order_name="sneaky"), format="json")
    return getattr(client, method)(url)


@pytest.mark.parametrize("kind", list(BAD_AUTHORIZATION))
@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_bad_credentials_are_a_401_and_change_nothing(alice: Any, kind: str, method: str, path: str) -> None:
    order = make_order(alice)
    note = Notification.objects.create(user=alice, order=order, kind="completed", message="done")
    before = dict(Order.objects.filter(pk=order.pk).values().get())
    client = APIClient()
    header = BAD_AUTHORIZATION[kind](alice)
    if header is not None:
        client.credentials(HTTP_AUTHORIZATION=header)

    response = _request(client, method, path.format(id=order.pk, note=note.pk))

    assert response.status_code == 401, (kind, response.status_code, response.content[:300])
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response["Content-Type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str)
    assert dict(Order.objects.filter(pk=order.pk).values().get()) == before
    assert Order.objects.count() == 1
    note.refresh_from_db()
    assert note.read_at is None


def test_the_same_client_with_a_good_token_gets_through(alice: Any) -> None:
    # Guards the test above: its 401s must come from the credentials, not from broken routes.
    order = make_order(alice)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {AccessToken.for_user(alice)}")
    assert client.get(f"/api/orders/{order.pk}/").status_code == 200


def _login(email: str, password: str = "correct-horse-battery-9") -> dict[str, Any]:
    response = APIClient().post("/api/auth/login", {"email": email, "password": password}, format="json")
    assert response.status_code == 200, response.content[:300]
    return dict(response.json())


def _bearer(access: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_an_access_token_revoked_by_logout_is_a_401(alice: Any, method: str, path: str) -> None:
    order = make_order(alice)
    note = Notification.objects.create(user=alice, order=order, kind="completed", message="done")
    session = _login(alice.email)
    client = _bearer(session["access"])
    assert client.get("/api/orders/").status_code == 200
    assert client.post("/api/auth/logout", {"refresh": session["refresh"]}, format="json").status_code == 204

    response = _request(client, method, path.format(id=order.pk, note=note.pk))
    assert response.status_code == 401, response.content[:300]
    assert Order.objects.filter(pk=order.pk, order_name="restock", status="scheduled").exists()


def test_logout_all_revokes_every_session_for_the_orders_api(alice: Any) -> None:
    order = make_order(alice)
    laptop, phone = _login(alice.email), _login(alice.email)
    assert _bearer(laptop["access"]).post("/api/auth/logout-all").status_code == 204
    for session in (laptop, phone):
        client = _bearer(session["access"])
        assert client.get(f"/api/orders/{order.pk}/").status_code == 401
        assert client.delete(f"/api/orders/{order.pk}/").status_code == 401
    assert Order.objects.filter(pk=order.pk).exists()
