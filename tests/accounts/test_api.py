"""The auth API: sign-up, login, refresh rotation, me, and the JSON error contract."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from accounts.models import User
from tests.accounts.helpers import PASSWORD, anon, bearer, login, me_status, refresh_status
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def test_signup_creates_the_user_and_returns_working_tokens() -> None:
    response = anon().post("/api/auth/signup", {"email": " Carol@Example.COM ", "password": PASSWORD}, format="json")

    assert response.status_code == 201
    body = response.json()
    user = User.objects.get(email="carol@example.com")
    assert body["user"]["user_id"] == user.pk
    assert body["user"]["email"] == "carol@example.com"
    assert user.check_password(PASSWORD)
    assert me_status(body["access"]) == 200
    assert refresh_status(body["refresh"]) == 200


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "", "password": PASSWORD}, "email"),
        ({"email": "dave@example.com", "password": "short"}, "password"),
        ({"email": "dave@example.com", "password": "password123"}, "password"),
        ({"email": "dave@example.com", "password": "83749127364"}, "password"),
        ({"email": "davidson.smithers@example.com", "password": "davidson.smithers"}, "password"),
        ({"email": "dave@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
    ],
)
def test_signup_rejects_bad_input_with_field_errors(payload: dict[str, Any], field: str) -> None:
    response = anon().post("/api/auth/signup", payload, format="json")

    assert response.status_code == 400
    assert field in response.json()
    assert not User.objects.exists()


def test_signup_rejects_an_email_taken_in_another_case(alice: Any) -> None:
    response = anon().post("/api/auth/signup", {"email": "ALICE@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["An account with this email address already exists."]}
    assert User.objects.count() == 1


def test_login_returns_tokens_and_the_user(alice: Any) -> None:
    response = anon().post("/api/auth/login", {"email": "Alice@EXAMPLE.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert body["user"]["user_id"] == alice.pk
    assert body["user"]["email"] == "alice@example.com"
    assert me_status(body["access"]) == 200


@pytest.mark.parametrize("case", ["unknown email", "wrong password", "deactivated"])
def test_login_failures_all_get_the_same_generic_401(case: str) -> None:
    make_user("erin@example.com", is_active=case != "deactivated")
    email = "nobody@example.com" if case == "unknown email" else "erin@example.com"
    password = "wrong-password-1" if case == "wrong password" else PASSWORD

    response = anon().post("/api/auth/login", {"email": email, "password": password}, format="json")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid email or password."}
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response["Content-Type"] == "application/json"


def test_login_ignores_a_stale_authorization_header(alice: Any) -> None:
    client = bearer("garbage.token.value")

    response = client.post("/api/auth/login", {"email": "alice@example.com", "password": PASSWORD}, format="json")

    assert response.status_code == 200


def test_refresh_rotates_and_the_old_refresh_token_is_rejected(alice: Any) -> None:
    first = login("alice@example.com")

    response = anon().post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json")

    assert response.status_code == 200
    second = response.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert me_status(second["access"]) == 200
    again = anon().post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json")
    assert again.status_code == 401
    assert again["WWW-Authenticate"].startswith("Bearer")


def test_reusing_a_rotated_refresh_token_ends_that_session(alice: Any) -> None:
    """Two parties holding one refresh token is a theft signal: the whole sign-in is revoked."""
    first = login("alice@example.com")
    other_device = login("alice@example.com")
    second = anon().post("/api/auth/refresh", {"refresh": first["refresh"]}, format="json").json()

    assert refresh_status(first["refresh"]) == 401

    assert refresh_status(second["refresh"]) == 401
    assert me_status(second["access"]) == 401
    assert me_status(other_device["access"]) == 200


def test_refresh_rejects_garbage_and_missing_tokens() -> None:
    assert anon().post("/api/auth/refresh", {"refresh": "abc"}, format="json").status_code == 401
    missing = anon().post("/api/auth/refresh", {}, format="json")
    assert missing.status_code == 400
    assert "refresh" in missing.json()


def test_me_returns_the_profile(alice: Any, alice_api: Any) -> None:
    response = alice_api.get("/api/auth/me")

    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == alice.pk
    assert body["email"] == "alice@example.com"
    assert body["time_zone"] == "UTC"
    assert "date_joined" in body
    assert "password" not in body


def test_me_patch_changes_the_time_zone(alice: Any, alice_api: Any) -> None:
    response = alice_api.patch("/api/auth/me", {"time_zone": "Europe/Berlin"}, format="json")

    assert response.status_code == 200
    assert response.json()["time_zone"] == "Europe/Berlin"
    alice.refresh_from_db()
    assert alice.time_zone == "Europe/Berlin"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "europe/berlin", "CET; DROP TABLE"])
def test_me_patch_rejects_an_unknown_time_zone(alice: Any, alice_api: Any, zone: str) -> None:
    response = alice_api.patch("/api/auth/me", {"time_zone": zone}, format="json")

    assert response.status_code == 400
    assert "time_zone" in response.json()
    alice.refresh_from_db()
    assert alice.time_zone == "UTC"


def test_me_without_a_token_is_a_json_401_with_a_bearer_challenge(db: Any) -> None:
    response = anon().get("/api/auth/me")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in response.json()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/auth/signup/"),
        ("post", "/api/auth/login/"),
        ("post", "/api/auth/refresh/"),
        ("get", "/api/auth/me/"),
        ("post", "/api/auth/logout/"),
        ("post", "/api/auth/logout-all/"),
    ],
)
def test_every_route_answers_with_a_trailing_slash_too(alice: Any, method: str, path: str) -> None:
    tokens = login("alice@example.com")
    client = bearer(tokens["access"])
    body: dict[str, Any] = {"email": "frank@example.com", "password": PASSWORD}
    if "login" in path:
        body = {"email": "alice@example.com", "password": PASSWORD}
    if "refresh" in path:
        body = {"refresh": tokens["refresh"]}

    response = getattr(client, method)(path, body, format="json")

    assert response.status_code in {200, 201, 204}


def test_errors_are_json_never_html(alice: Any) -> None:
    client = anon()
    not_found = client.get("/api/auth/nope")
    wrong_method = client.get("/api/auth/login")
    bad_json = client.post("/api/auth/login", "{not json", content_type="application/json")
    form_post = client.post("/api/auth/login", {"email": "alice@example.com", "password": PASSWORD})

    assert (not_found.status_code, wrong_method.status_code, bad_json.status_code) == (404, 405, 400)
    assert form_post.status_code == 415
    for response in (not_found, wrong_method, bad_json, form_post):
        assert response["Content-Type"] == "application/json"
        assert "detail" in response.json()


@pytest.mark.django_db(transaction=True)
def test_simultaneous_signups_with_one_email_create_one_account() -> None:
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def signup(n: int) -> None:
        try:
            barrier.wait()
            body = {"email": "Twin@Example.com" if n % 2 else "twin@example.com", "password": PASSWORD}
            statuses.append(anon(f"10.0.3.{n}").post("/api/auth/signup", body, format="json").status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=signup, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [201, 400, 400, 400]
    assert User.objects.filter(email="twin@example.com").count() == 1


def test_the_schema_documents_the_auth_errors(db: Any) -> None:
    schema = anon().get("/api/schema/", {"format": "json"}).json()
    paths = schema["paths"]

    assert {"401", "429"} <= set(paths["/api/auth/login/"]["post"]["responses"])
    assert "429" in paths["/api/auth/signup/"]["post"]["responses"]
    assert "401" in paths["/api/auth/refresh/"]["post"]["responses"]
    assert "Retry-After" in paths["/api/auth/me/"]["patch"]["responses"]["429"]["headers"]
    assert paths["/api/auth/me/"]["get"]["security"] == [{"jwtAuth": []}]
