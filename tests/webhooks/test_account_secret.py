"""POST /api/account/webhook-secret and the account page's button: a secret shown once, rotation."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from standardwebhooks import Webhook

from webhooks.models import SigningSecret
from webhooks.services import signing_secrets_for_users
from webhooks.signing import signature_headers

pytestmark = pytest.mark.django_db


def test_the_api_makes_a_secret_and_shows_it_once(alice_api: Any, alice: Any) -> None:
    response = alice_api.post("/api/account/webhook-secret")
    assert response.status_code == 200
    secret = response.json()["secret"]
    assert secret.startswith("whsec_") and set(response.json()) == {"secret"}
    assert "no-store" in response["Cache-Control"]
    assert signing_secrets_for_users([alice.pk])[alice.pk] == (secret,)
    # No read endpoint gives it back.
    assert alice_api.get("/api/account/webhook-secret").status_code == 405
    assert secret not in str(alice_api.get("/api/auth/me").json())


def test_a_rotation_through_the_api_keeps_the_old_secret_signing_for_a_day(alice_api: Any, alice: Any) -> None:
    old = alice_api.post("/api/account/webhook-secret/").json()["secret"]
    new = alice_api.post("/api/account/webhook-secret/").json()["secret"]
    assert old != new
    keys = signing_secrets_for_users([alice.pk])[alice.pk]
    headers = signature_headers(msg_id="m", body="{}", secrets=keys, timestamp=timezone.now())
    Webhook(old).verify("{}", headers)
    Webhook(new).verify("{}", headers)
    until = SigningSecret.objects.get(user=alice).previous_valid_until
    assert until is not None and abs(until - (timezone.now() + timedelta(hours=24))) < timedelta(minutes=1)


def test_the_secret_api_needs_a_token(client: Client) -> None:
    response = client.post("/api/account/webhook-secret")
    assert response.status_code == 401
    assert not SigningSecret.objects.exists()


def test_each_user_rotates_only_their_own_secret(alice_api: Any, bob_api: Any, alice: Any, bob: Any) -> None:
    alice_secret = alice_api.post("/api/account/webhook-secret").json()["secret"]
    bob_api.post("/api/account/webhook-secret")
    bob_api.post("/api/account/webhook-secret")
    assert signing_secrets_for_users([alice.pk])[alice.pk] == (alice_secret,)


def test_the_account_page_button_shows_the_new_secret_once(client: Client, alice: Any) -> None:
    client.force_login(alice)
    page = client.get("/account")
    assert b"Make signing secret" in page.content
    response = client.post("/account/webhook-secret")
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    secret = signing_secrets_for_users([alice.pk])[alice.pk][0]
    assert secret.encode() in response.content
    again = client.get("/account")
    assert secret.encode() not in again.content
    assert b"Rotate signing secret" in again.content
    rotated = client.post("/account/webhook-secret")
    assert b"The previous secret also signs deliveries until" in rotated.content


def test_the_account_page_button_needs_a_post_with_csrf(alice: Any) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(alice)
    assert browser.get("/account/webhook-secret").status_code == 405
    assert browser.post("/account/webhook-secret").status_code == 403
    assert not SigningSecret.objects.exists()
