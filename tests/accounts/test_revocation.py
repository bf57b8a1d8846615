"""Logout, logout-all and password change: what is revoked, what stays signed in, and how exactly."""

from __future__ import annotations

import threading
from typing import Any

import jwt
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test import Client
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from tests.accounts.helpers import NEW_PASSWORD, PASSWORD, anon, bearer, login, me_status, refresh_status
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def _rotate(refresh: str) -> dict[str, Any]:
    response = anon().post("/api/auth/refresh", {"refresh": refresh}, format="json")
    assert response.status_code == 200
    return dict(response.json())


def _browser_session(email: str) -> Client:
    client = Client()
    response = client.post("/login", {"email": email, "password": PASSWORD})
    assert response.status_code == 302
    return client


def _signed_in(client: Client) -> bool:
    return client.get("/account").status_code == 200


# --- logout -------------------------------------------------------------------------------------


def test_logout_revokes_the_access_token_used_and_the_refresh_token(alice: Any) -> None:
    device = login("alice@example.com")
    other_device = login("alice@example.com")

    response = bearer(device["access"]).post("/api/auth/logout", {"refresh": device["refresh"]}, format="json")

    assert response.status_code == 204
    after = bearer(device["access"]).get("/api/auth/me")
    assert after.status_code == 401
    assert after["WWW-Authenticate"].startswith("Bearer")
    assert refresh_status(device["refresh"]) == 401
    assert me_status(other_device["access"]) == 200
    assert refresh_status(other_device["refresh"]) == 200


def test_logout_without_a_refresh_token_still_ends_that_sign_in(alice: Any) -> None:
    device = login("alice@example.com")

    assert bearer(device["access"]).post("/api/auth/logout").status_code == 204

    assert me_status(device["access"]) == 401
    assert refresh_status(device["refresh"]) == 401


def test_logout_also_revokes_access_tokens_minted_earlier_in_the_same_sign_in(alice: Any) -> None:
    device = login("alice@example.com")
    rotated = _rotate(device["refresh"])

    assert bearer(rotated["access"]).post("/api/auth/logout").status_code == 204

    assert me_status(device["access"]) == 401
    assert me_status(rotated["access"]) == 401
    assert refresh_status(rotated["refresh"]) == 401


def test_the_refresh_token_stays_revoked_when_redis_loses_its_keys(alice: Any) -> None:
    """The deny-list is in Redis; the refresh blacklist is in the database and survives a flush."""
    device = login("alice@example.com")
    bearer(device["access"]).post("/api/auth/logout", {"refresh": device["refresh"]}, format="json")

    redis.Redis.from_url(settings.REDIS_URL).flushdb()

    assert refresh_status(device["refresh"]) == 401


def test_the_deny_list_entry_lives_as_long_as_the_token(alice: Any) -> None:
    device = login("alice@example.com")
    claims = jwt.decode(device["access"], options={"verify_signature": False})

    bearer(device["access"]).post("/api/auth/logout").status_code  # noqa: B018

    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(f"cache:1:jwt-deny:{claims['jti']}")
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()
    assert lifetime - 5 <= ttl <= lifetime + 1


def test_logout_of_a_token_from_the_plain_fixture_revokes_it(alice: Any) -> None:
    token = str(AccessToken.for_user(alice))

    assert bearer(token).post("/api/auth/logout").status_code == 204

    assert me_status(token) == 401


def test_logout_with_someone_elses_refresh_token_is_refused_and_revokes_nothing(alice: Any, bob: Any) -> None:
    alice_device = login("alice@example.com")
    bob_device = login("bob@example.com")

    response = bearer(alice_device["access"]).post(
        "/api/auth/logout", {"refresh": bob_device["refresh"]}, format="json"
    )

    assert response.status_code == 400
    assert "refresh" in response.json()
    assert me_status(alice_device["access"]) == 200
    assert refresh_status(bob_device["refresh"]) == 200


@pytest.mark.parametrize("which", ["garbage", "access"])
def test_logout_with_an_invalid_refresh_token_is_a_400(alice: Any, which: str) -> None:
    device = login("alice@example.com")
    refresh = "not.a.token" if which == "garbage" else device["access"]

    response = bearer(device["access"]).post("/api/auth/logout", {"refresh": refresh}, format="json")

    assert response.status_code == 400
    assert "refresh" in response.json()
    assert me_status(device["access"]) == 200


def test_logout_needs_a_valid_access_token(alice: Any) -> None:
    assert anon().post("/api/auth/logout").status_code == 401


def test_page_logout_does_not_touch_api_sessions(alice: Any) -> None:
    device = login("alice@example.com")
    browser = _browser_session("alice@example.com")

    assert browser.post("/logout").status_code == 302

    assert not _signed_in(browser)
    assert me_status(device["access"]) == 200


# --- logout-all ---------------------------------------------------------------------------------


def test_logout_all_ends_every_session_of_the_user_and_no_one_elses(alice: Any, bob: Any) -> None:
    phone, laptop = login("alice@example.com"), login("alice@example.com")
    fixture_token = str(AccessToken.for_user(alice))
    browser = _browser_session("alice@example.com")
    bobs = login("bob@example.com")

    assert bearer(phone["access"]).post("/api/auth/logout-all").status_code == 204

    for tokens in (phone, laptop):
        assert me_status(tokens["access"]) == 401
        assert refresh_status(tokens["refresh"]) == 401
    assert me_status(fixture_token) == 401
    assert not _signed_in(browser)
    assert me_status(bobs["access"]) == 200


def test_a_sign_in_right_after_logout_all_works_even_within_the_same_second(alice: Any) -> None:
    """The version check is exact: no second-granular window that over- or under-revokes."""
    for _ in range(3):
        old = login("alice@example.com")
        bearer(old["access"]).post("/api/auth/logout-all")
        new = login("alice@example.com")

        assert me_status(old["access"]) == 401
        assert me_status(new["access"]) == 200
        assert refresh_status(new["refresh"]) == 200


def test_page_logout_everywhere_ends_api_sessions_too(alice: Any) -> None:
    device = login("alice@example.com")
    browser = _browser_session("alice@example.com")

    response = browser.post("/account/logout-all")

    assert response.status_code == 302
    assert response["Location"] == "/login"
    assert not _signed_in(browser)
    assert me_status(device["access"]) == 401


# --- password change ----------------------------------------------------------------------------


def _change_password(access: str, old: str = PASSWORD, new: str = NEW_PASSWORD) -> Any:
    return bearer(access).patch("/api/auth/me", {"old_password": old, "new_password": new}, format="json")


def test_password_change_keeps_this_device_and_revokes_every_other_token(alice: Any) -> None:
    this, other = login("alice@example.com"), login("alice@example.com")
    fixture_token = str(AccessToken.for_user(alice))
    browser = _browser_session("alice@example.com")

    response = _change_password(this["access"])

    assert response.status_code == 200
    assert me_status(this["access"]) == 200
    rotated = _rotate(this["refresh"])
    assert me_status(rotated["access"]) == 200
    assert refresh_status(rotated["refresh"]) == 200
    assert me_status(other["access"]) == 401
    assert refresh_status(other["refresh"]) == 401
    assert me_status(fixture_token) == 401
    assert not _signed_in(browser)


def test_after_a_password_change_only_the_new_password_logs_in(alice: Any) -> None:
    _change_password(login("alice@example.com")["access"])

    old = anon().post("/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}, format="json")
    new = anon().post("/api/auth/login", {"email": "alice@example.com", "password": NEW_PASSWORD}, format="json")

    assert old.status_code == 401
    assert new.status_code == 200


def test_a_second_password_change_elsewhere_revokes_the_device_kept_by_the_first(alice: Any) -> None:
    first, second = login("alice@example.com"), login("alice@example.com")
    _change_password(first["access"])
    second = login("alice@example.com", NEW_PASSWORD)

    assert _change_password(second["access"], old=NEW_PASSWORD, new="third-password-for-alice-7").status_code == 200

    assert me_status(first["access"]) == 401
    assert refresh_status(first["refresh"]) == 401
    assert me_status(second["access"]) == 200


def test_changing_the_password_twice_from_one_device_keeps_that_device(alice: Any) -> None:
    this, other = login("alice@example.com"), login("alice@example.com")

    assert _change_password(this["access"]).status_code == 200
    assert _change_password(this["access"], old=NEW_PASSWORD, new="third-password-for-alice-7").status_code == 200

    assert me_status(this["access"]) == 200
    assert refresh_status(this["refresh"]) == 200
    assert me_status(other["access"]) == 401


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"old_password": "wrong-password-1", "new_password": NEW_PASSWORD}, "old_password"),
        ({"new_password": NEW_PASSWORD}, "old_password"),
        ({"old_password": PASSWORD}, "new_password"),
        ({"old_password": PASSWORD, "new_password": "short"}, "new_password"),
        ({"old_password": PASSWORD, "new_password": "alice@example.com"}, "new_password"),
        ({"old_password": PASSWORD, "new_password": NEW_PASSWORD, "time_zone": "Nowhere/Else"}, "time_zone"),
    ],
)
def test_a_refused_password_change_changes_nothing(alice: Any, payload: dict[str, Any], field: str) -> None:
    this, other = login("alice@example.com"), login("alice@example.com")

    response = bearer(this["access"]).patch("/api/auth/me", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert alice.token_version == 0
    assert me_status(other["access"]) == 200


# --- concurrency --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_let_exactly_one_through() -> None:
    make_user("carol@example.com")
    refresh = login("carol@example.com")["refresh"]
    statuses: list[int] = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        try:
            barrier.wait()
            statuses.append(anon().post("/api/auth/refresh", {"refresh": refresh}, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] + [401] * 5
    assert User.objects.get(email="carol@example.com").is_active


def test_without_redis_authenticated_requests_fail_closed(alice: Any, settings: Any) -> None:
    """The deny-list cannot be read: refuse with a 503 rather than accept a possibly revoked token."""
    device = login("alice@example.com")
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }

    response = bearer(device["access"]).get("/api/auth/me")
    login_response = anon().post("/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 503
    assert login_response.status_code == 503
    assert "Retry-After" in response
