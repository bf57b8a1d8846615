"""Sign-up, login, logout and account pages: session auth, CSRF, field errors, redirects, cookies."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from accounts.models import User
from tests.accounts.helpers import NEW_PASSWORD, PASSWORD
from tests.processes import for_production_like

pytestmark = pytest.mark.django_db


def _field_error(html: str, field: str) -> bool:
    return f'data-testid="error-{field}"' in html


def _browser(email: str = "alice@example.com") -> Client:
    client = Client()
    assert client.post("/login", {"email": email, "password": PASSWORD}).status_code == 302
    return client


def test_signup_page_labels_every_input() -> None:
    html = Client().get("/signup").content.decode()

    assert '<label for="id_email">Email</label>' in html
    assert '<label for="id_password">Password</label>' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_signing_up_on_the_page_signs_in_and_goes_to_the_orders_dashboard() -> None:
    client = Client()

    response = client.post("/signup", {"email": "Gina@Example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/orders/"
    user = User.objects.get(email="gina@example.com")
    assert client.session["_auth_user_id"] == str(user.pk)
    assert 'data-testid="signed-in-email">gina@example.com<' in client.get("/account").content.decode()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "nope", "password": PASSWORD}, "email"),
        ({"email": "alice@example.com", "password": PASSWORD}, "email"),
        ({"email": "hank@example.com", "password": "123"}, "password"),
        ({"email": "hank@example.com", "password": ""}, "password"),
    ],
)
def test_signup_page_shows_errors_beside_the_fields(alice: Any, data: dict[str, str], field: str) -> None:
    response = Client().post("/signup", data)

    assert response.status_code == 200
    html = response.content.decode()
    assert _field_error(html, field)
    assert 'aria-invalid="true"' in html
    assert User.objects.count() == 1


def test_login_page_goes_to_the_orders_dashboard(alice: Any) -> None:
    client = Client()

    response = client.post("/login", {"email": "ALICE@example.com", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"] == "/orders/"
    assert client.session["_auth_user_id"] == str(alice.pk)


def test_login_page_honours_a_local_next(alice: Any) -> None:
    form = Client().get("/login?next=/orders/42").content.decode()
    assert 'name="next" value="/orders/42"' in form

    response = Client().post("/login?next=/orders/42", {"email": "alice@example.com", "password": PASSWORD})
    assert response["Location"] == "/orders/42"

    response = Client().post("/login", {"email": "alice@example.com", "password": PASSWORD, "next": "/account"})
    assert response["Location"] == "/account"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "javascript:alert(1)"])
def test_login_page_ignores_an_off_site_next(alice: Any, target: str) -> None:
    response = Client().post("/login", {"email": "alice@example.com", "password": PASSWORD, "next": target})

    assert response["Location"] == "/orders/"


def test_a_page_that_needs_login_redirects_to_login_with_next(db: Any) -> None:
    response = Client().get("/account")

    assert response.status_code == 302
    assert response["Location"] == "/login?next=/account"


def test_wrong_credentials_on_the_login_page_show_one_generic_error(alice: Any) -> None:
    wrong = Client().post("/login", {"email": "alice@example.com", "password": "wrong-password-1"})
    unknown = Client().post("/login", {"email": "zed@example.com", "password": PASSWORD})

    for response in (wrong, unknown):
        assert response.status_code == 200
        html = response.content.decode()
        assert 'data-testid="form-errors"' in html
        assert "Invalid email or password." in html
        assert "_auth_user_id" not in response.client.session


def test_login_page_requires_both_fields(db: Any) -> None:
    html = Client().post("/login", {"email": "", "password": ""}).content.decode()

    assert _field_error(html, "email")
    assert _field_error(html, "password")


def test_forms_are_protected_by_csrf(alice: Any) -> None:
    client = Client(enforce_csrf_checks=True)

    refused = client.post("/login", {"email": "alice@example.com", "password": PASSWORD})
    assert refused.status_code == 403

    client.get("/login")
    token = client.cookies["csrftoken"].value
    accepted = client.post("/login", {"email": "alice@example.com", "password": PASSWORD, "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302

    no_token_logout = client.post("/logout")
    assert no_token_logout.status_code == 403
    assert client.get("/account").status_code == 200


def test_logout_is_post_only_and_ends_the_session(alice: Any) -> None:
    client = _browser()

    assert client.get("/logout").status_code == 405
    assert client.get("/account").status_code == 200

    response = client.post("/logout")

    assert response.status_code == 302
    assert response["Location"] == "/login"
    assert client.get("/account").status_code == 302


def test_the_header_shows_the_email_and_a_logout_form(alice: Any) -> None:
    html = _browser().get("/account").content.decode()

    assert 'data-testid="signed-in-email">alice@example.com<' in html
    assert '<form method="post" action="/logout"' in html


def test_signed_in_users_skip_the_login_and_signup_pages(alice: Any) -> None:
    client = _browser()

    assert client.get("/login")["Location"] == "/orders/"
    assert client.get("/signup")["Location"] == "/orders/"


def test_session_cookie_is_httponly_and_samesite_lax(alice: Any) -> None:
    response = Client().post("/login", {"email": "alice@example.com", "password": PASSWORD})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]

    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


def test_cookies_are_secure_when_debug_is_off() -> None:
    env = for_production_like({**os.environ, "DEBUG": "false", "SECRET_KEY": "x" * 64, "ALLOWED_HOSTS": "example.com"})
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SESSION_COOKIE_SAMESITE)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "DJANGO_SETTINGS_MODULE": "scheduler_site.settings"},
        capture_output=True,
        text=True,
        check=True,
        cwd=settings.BASE_DIR,
    )

    assert result.stdout.split() == ["True", "True", "True", "Lax"]


def test_account_page_changes_the_time_zone(alice: Any) -> None:
    client = _browser()

    response = client.post("/account", {"time_zone": "America/New_York"})

    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.time_zone == "America/New_York"


def test_account_page_rejects_an_unknown_time_zone_beside_the_field(alice: Any) -> None:
    response = _browser().post("/account", {"time_zone": "Atlantis/Capital"})

    assert response.status_code == 200
    assert _field_error(response.content.decode(), "time_zone")
    alice.refresh_from_db()
    assert alice.time_zone == "UTC"


def test_password_change_page_keeps_this_browser_and_ends_the_others(alice: Any) -> None:
    this, other = _browser(), _browser()

    response = this.post("/account/password", {"old_password": PASSWORD, "new_password": NEW_PASSWORD})

    assert response.status_code == 302
    assert this.get("/account").status_code == 200
    assert other.get("/account").status_code == 302
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)


def test_password_change_page_shows_a_wrong_old_password_beside_the_field(alice: Any) -> None:
    response = _browser().post("/account/password", {"old_password": "nope-nope-1", "new_password": NEW_PASSWORD})

    assert response.status_code == 200
    assert _field_error(response.content.decode(), "old_password")
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


def test_a_deactivated_users_browser_session_ends(alice: Any) -> None:
    client = _browser()
    alice.is_active = False
    alice.save(update_fields=["is_active"])

    assert client.get("/account").status_code == 302
