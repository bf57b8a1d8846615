"""Token validation: every forged, expired, mis-typed or orphaned token is a 401."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import jwt
import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken

from tests.accounts.helpers import bearer, login, me_status, refresh_status

pytestmark = pytest.mark.django_db


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def test_a_token_with_a_changed_payload_is_rejected(alice: Any, bob: Any) -> None:
    header, _, signature = login("alice@example.com")["access"].split(".")
    claims = _claims(login("alice@example.com")["access"])
    claims["user_id"] = str(bob.pk)
    forged = ".".join([header, _b64(json.dumps(claims).encode()), signature])

    response = bearer(forged).get("/api/auth/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unsigned_alg_none_token_is_rejected(alice: Any) -> None:
    claims = _claims(login("alice@example.com")["access"])
    unsigned = ".".join([_b64(b'{"alg":"none","typ":"JWT"}'), _b64(json.dumps(claims).encode()), ""])

    assert me_status(unsigned) == 401


def test_a_token_signed_with_another_algorithm_is_rejected(alice: Any) -> None:
    """The algorithm is pinned to HS256: the same key under HS512 does not pass."""
    claims = _claims(login("alice@example.com")["access"])
    other_alg = jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS512")

    assert me_status(other_alg) == 401
    assert me_status(jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")) == 200


def test_a_token_signed_with_another_key_is_rejected(alice: Any) -> None:
    claims = _claims(login("alice@example.com")["access"])

    assert me_status(jwt.encode(claims, "some-other-key-of-sufficient-length-0123456789", algorithm="HS256")) == 401


def test_an_expired_access_token_is_rejected(alice: Any) -> None:
    tokens = login("alice@example.com")
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]

    with time_machine.travel(timezone.now() + lifetime - timedelta(seconds=5), tick=False):
        assert me_status(tokens["access"]) == 200
    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=1), tick=False):
        assert me_status(tokens["access"]) == 401


def test_a_token_that_expires_after_it_was_used_gets_the_same_answer_as_one_never_seen(alice: Any) -> None:
    """Tokens that passed are remembered (accounts/authentication.py); expiry is still checked on every
    request, and a remembered token that expired answers exactly as an expired one seen for the first time."""
    used, unseen = login("alice@example.com")["access"], login("alice@example.com")["access"]
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    assert me_status(used) == 200

    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=1), tick=False):
        answers = [bearer(token).get("/api/auth/me") for token in (used, unseen)]

    assert [a.status_code for a in answers] == [401, 401]
    assert answers[0].json() == answers[1].json()


def test_an_expired_refresh_token_is_rejected(alice: Any) -> None:
    tokens = login("alice@example.com")
    lifetime = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]

    with time_machine.travel(timezone.now() + lifetime + timedelta(seconds=1), tick=False):
        assert refresh_status(tokens["refresh"]) == 401


def test_a_refresh_token_is_not_accepted_as_an_access_token(alice: Any) -> None:
    assert me_status(login("alice@example.com")["refresh"]) == 401


def test_an_access_token_is_not_accepted_as_a_refresh_token(alice: Any) -> None:
    assert refresh_status(login("alice@example.com")["access"]) == 401


def test_tokens_of_a_deleted_user_are_rejected(alice: Any) -> None:
    tokens = login("alice@example.com")
    alice.delete()

    assert me_status(tokens["access"]) == 401
    assert refresh_status(tokens["refresh"]) == 401


def test_tokens_of_a_deactivated_user_are_rejected_at_once(alice: Any) -> None:
    tokens = login("alice@example.com")
    fixture_token = str(AccessToken.for_user(alice))
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    assert me_status(tokens["access"]) == 401
    assert me_status(fixture_token) == 401
    assert refresh_status(tokens["refresh"]) == 401


@pytest.mark.parametrize("header", ["Bearer", "Bearer not-a-jwt", "Token abc", "Bearer a.b.c"])
def test_malformed_authorization_headers_are_rejected(alice: Any, header: str) -> None:
    client = bearer("x")
    client.credentials(HTTP_AUTHORIZATION=header)

    response = client.get("/api/auth/me")

    assert response.status_code == 401
    assert response["Content-Type"] == "application/json"


def test_issued_tokens_carry_the_version_and_session_claims(alice: Any) -> None:
    tokens = login("alice@example.com")
    access, refresh = _claims(tokens["access"]), _claims(tokens["refresh"])

    assert access["ver"] == refresh["ver"] == 0
    assert access["sid"] == refresh["sid"]
    assert access["token_type"] == "access"
    assert jwt.get_unverified_header(tokens["access"])["alg"] == "HS256"


def _signed(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, settings.SIMPLE_JWT["SIGNING_KEY"], algorithm="HS256")


@pytest.mark.parametrize("user_id", ["abc", "", "1e3", "٣", "9" * 40, None, True, [1]])
def test_a_signed_token_with_an_impossible_user_id_is_a_401_not_a_500(alice: Any, user_id: Any) -> None:
    tokens = login("alice@example.com")
    access, refresh = _claims(tokens["access"]), _claims(tokens["refresh"])

    assert me_status(_signed({**access, "user_id": user_id})) == 401
    assert refresh_status(_signed({**refresh, "user_id": user_id})) == 401


@pytest.mark.parametrize("missing", ["jti", "exp", "token_type", "user_id"])
def test_a_signed_refresh_token_missing_a_claim_is_refused_everywhere(alice: Any, missing: str) -> None:
    tokens = login("alice@example.com")
    refresh = {k: v for k, v in _claims(tokens["refresh"]).items() if k != missing}

    assert refresh_status(_signed(refresh)) == 401
    logout = bearer(tokens["access"]).post("/api/auth/logout", {"refresh": _signed(refresh)}, format="json")
    assert logout.status_code == 400
    assert me_status(tokens["access"]) == 200


@pytest.mark.parametrize("version", ["0", None, 1.0, -1])
def test_a_token_whose_version_claim_is_not_the_current_integer_is_revoked(alice: Any, version: Any) -> None:
    access = _claims(login("alice@example.com")["access"])

    assert me_status(_signed({**access, "ver": version})) == 401
