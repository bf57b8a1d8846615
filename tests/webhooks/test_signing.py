"""Signing secrets: shown once, encrypted at rest, the old one signing for 24 hours after a rotation."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import connection
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from webhooks import secrets as secret_store
from webhooks.models import SigningSecret
from webhooks.secrets import SecretUnreadable, decrypt_secret
from webhooks.services import signing_secret_rotate, signing_secrets_for_users
from webhooks.signing import signature_headers

pytestmark = pytest.mark.django_db
T0 = datetime(2030, 3, 1, 12, 0, tzinfo=UTC)
BODY = '{"type":"order.execution","data":{"order_id":1}}'


def _sign(user_id: int, when: datetime) -> dict[str, str]:
    keys = signing_secrets_for_users([user_id], now=when)[user_id]
    return signature_headers(msg_id="order-1-occurrence-1", body=BODY, secrets=keys, timestamp=when)


def test_a_new_secret_is_standard_webhooks_shaped_and_shown_only_by_the_call(alice: Any) -> None:
    secret = signing_secret_rotate(user_id=alice.pk)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert signing_secret_rotate(user_id=alice.pk) != secret


def test_the_database_holds_no_secret_in_plain_text(alice: Any) -> None:
    secret = signing_secret_rotate(user_id=alice.pk)
    signing_secret_rotate(user_id=alice.pk)  # the first is now the "previous" one
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_encrypted, previous_encrypted FROM webhooks_signingsecret")
        stored = " ".join(cursor.fetchone())
    raw = secret.removeprefix("whsec_")
    assert raw not in stored and raw.rstrip("=") not in stored
    assert base64.b64decode(raw).hex() not in stored
    assert decrypt_secret(SigningSecret.objects.get(user=alice).previous_encrypted) == secret


def test_a_signature_verifies_with_standardwebhooks_and_the_secret(alice: Any) -> None:
    secret = signing_secret_rotate(user_id=alice.pk, now=T0)
    with time_machine.travel(T0, tick=False):
        headers = _sign(alice.pk, T0)
        assert headers["webhook-id"] == "order-1-occurrence-1"
        assert headers["webhook-timestamp"] == str(int(T0.timestamp()))
        assert Webhook(secret).verify(BODY, headers) == {"type": "order.execution", "data": {"order_id": 1}}
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(BODY.replace("1", "2"), headers)


def test_after_a_rotation_old_and_new_secret_both_verify_for_24_hours(alice: Any) -> None:
    old = signing_secret_rotate(user_id=alice.pk, now=T0)
    new = signing_secret_rotate(user_id=alice.pk, now=T0 + timedelta(hours=1))
    during = T0 + timedelta(hours=24, minutes=59)
    with time_machine.travel(during, tick=False):
        headers = _sign(alice.pk, during)
        assert len(headers["webhook-signature"].split(" ")) == 2
        Webhook(new).verify(BODY, headers)
        Webhook(old).verify(BODY, headers)
    after = T0 + timedelta(hours=25, seconds=1)
    with time_machine.travel(after, tick=False):
        headers = _sign(alice.pk, after)
        assert len(headers["webhook-signature"].split(" ")) == 1
        Webhook(new).verify(BODY, headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(BODY, headers)


def test_rotating_twice_ends_the_oldest_secret_at_once(alice: Any) -> None:
    first = signing_secret_rotate(user_id=alice.pk, now=T0)
    second = signing_secret_rotate(user_id=alice.pk, now=T0)
    third = signing_secret_rotate(user_id=alice.pk, now=T0)
    assert signing_secrets_for_users([alice.pk], now=T0)[alice.pk] == (third, second)
    assert first not in signing_secrets_for_users([alice.pk], now=T0)[alice.pk]


def test_each_user_signs_with_their_own_secret(alice: Any, bob: Any) -> None:
    alice_secret = signing_secret_rotate(user_id=alice.pk, now=T0)
    keys = signing_secrets_for_users([alice.pk, bob.pk], now=T0)
    assert keys[alice.pk] == (alice_secret,)
    # bob never asked for one: a delivery of his is still signed, with a secret made for him.
    assert SigningSecret.objects.filter(user=bob).exists()
    assert keys[bob.pk][0].startswith("whsec_") and keys[bob.pk] != keys[alice.pk]


def test_a_changed_encryption_key_is_an_error_not_a_wrong_signature(alice: Any, settings: Any) -> None:
    signing_secret_rotate(user_id=alice.pk)
    settings.WEBHOOK_SECRETS_KEYS = ["another key"]
    with pytest.raises(SecretUnreadable):
        decrypt_secret(SigningSecret.objects.get(user=alice).current_encrypted)


def test_an_unreadable_secret_leaves_that_user_without_keys_and_the_others_signing(
    alice: Any, bob: Any, settings: Any
) -> None:
    settings.WEBHOOK_SECRETS_KEYS = ["old key"]
    signing_secret_rotate(user_id=alice.pk)
    settings.WEBHOOK_SECRETS_KEYS = ["new key"]
    bob_secret = signing_secret_rotate(user_id=bob.pk)
    assert signing_secrets_for_users([alice.pk, bob.pk]) == {alice.pk: (), bob.pk: (bob_secret,)}
    # A rotation gives alice a readable secret again; the unreadable one, now previous, is left out.
    alice_secret = signing_secret_rotate(user_id=alice.pk)
    assert signing_secrets_for_users([alice.pk])[alice.pk] == (alice_secret,)


def test_the_encryption_key_can_be_rotated_by_listing_the_new_key_first(alice: Any, settings: Any) -> None:
    settings.WEBHOOK_SECRETS_KEYS = ["old key"]
    secret = signing_secret_rotate(user_id=alice.pk)
    settings.WEBHOOK_SECRETS_KEYS = ["new key", "old key"]
    assert signing_secrets_for_users([alice.pk])[alice.pk] == (secret,)
    # A secret written now is under the new key only.
    row = SigningSecret.objects.get(user=alice)
    row.current_encrypted = secret_store.encrypt_secret(secret)
    row.save()
    settings.WEBHOOK_SECRETS_KEYS = ["new key"]
    assert signing_secrets_for_users([alice.pk])[alice.pk] == (secret,)
