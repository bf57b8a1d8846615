"""Password reset by email: Django's views and tokens, this site's templates, limits and revocation."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client

from accounts.models import User
from tests.accounts.helpers import NEW_PASSWORD, PASSWORD, login, me_status

pytestmark = pytest.mark.django_db

LINK = re.compile(r"http://testserver(/password-reset/[^/\s]+/[^/\s]+)")


def _ask(email: str, ip: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=ip).post("/password-reset", {"email": email}, follow=True)


def _link(message: Any) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match.group(1)


def test_the_login_page_links_to_the_reset_page_which_is_styled_like_the_others() -> None:
    assert 'href="/password-reset">Forgot your password?</a>' in Client().get("/login").content.decode()
    page = Client().get("/password-reset")
    html = page.content.decode()
    assert page.status_code == 200
    assert '<section class="auth-card">' in html and '<label for="id_email">Email</label>' in html


def test_a_known_and_an_unknown_address_get_the_same_answer_and_only_the_known_one_a_mail(alice: Any) -> None:
    known = _ask("Alice@Example.com")
    unknown = _ask("nobody@example.com")

    assert known.redirect_chain == unknown.redirect_chain == [("/password-reset/sent", 302)]
    assert known.content == unknown.content
    assert len(mail.outbox) == 1
    (message,) = mail.outbox
    assert message.to == ["alice@example.com"]
    assert "within the hour" in message.body and _link(message)


def test_the_link_sets_a_new_password_and_ends_every_session_and_token(alice: Any) -> None:
    signed_in = Client()
    assert signed_in.post("/login", {"email": "alice@example.com", "password": PASSWORD}).status_code == 302
    tokens = login("alice@example.com")
    _ask("alice@example.com")
    link = _link(mail.outbox[0])

    browser = Client()
    form_page = browser.get(link, follow=True)
    assert form_page.status_code == 200 and "Choose a new password" in form_page.content.decode()
    set_url = form_page.redirect_chain[-1][0]
    weak = browser.post(set_url, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200 and 'data-testid="error-new_password2"' in weak.content.decode()
    done = browser.post(set_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)

    assert done.redirect_chain[-1] == ("/password-reset/done", 302)
    assert 'data-testid="reset-complete"' in done.content.decode()
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    # The old browser session and the API tokens are out; the new password signs in.
    assert signed_in.get("/orders/").status_code == 302
    assert me_status(tokens["access"]) == 401
    assert Client().post("/login", {"email": "alice@example.com", "password": NEW_PASSWORD}).status_code == 302
    # The link works once.
    again = Client().get(link, follow=True)
    assert 'data-testid="reset-link-invalid"' in again.content.decode()


def test_an_inactive_account_gets_no_mail(alice: Any) -> None:
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert _ask("alice@example.com").redirect_chain == [("/password-reset/sent", 302)]
    assert mail.outbox == []


def test_an_address_gets_a_few_mails_an_hour_and_then_the_same_answer_without_one(alice: Any, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_EMAIL = 2
    answers = [_ask("alice@example.com", ip=f"10.0.1.{n}") for n in range(4)]

    assert all(answer.redirect_chain == [("/password-reset/sent", 302)] for answer in answers)
    assert len({answer.content for answer in answers}) == 1
    assert len(mail.outbox) == 2


def test_one_ip_asking_too_often_gets_a_429_whatever_the_address(alice: Any, settings: Any) -> None:
    settings.PASSWORD_RESETS_PER_IP = 3
    for n in range(3):
        assert _ask(f"someone{n}@example.com").redirect_chain == [("/password-reset/sent", 302)]

    for email in ("alice@example.com", "nobody@example.com"):
        refused = Client(REMOTE_ADDR="10.0.0.1").post("/password-reset", {"email": email})
        assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
        assert "Too many attempts" in refused.content.decode()
    assert mail.outbox == []
