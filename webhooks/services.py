"""Writes of the webhooks app: signing secrets (made, rotated, read for signing)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from webhooks.models import SigningSecret
from webhooks.secrets import SecretUnreadable, decrypt_secret, encrypt_secret, new_signing_secret

logger = logging.getLogger(__name__)

# How long the secret before a rotation keeps signing next to the new one.
ROTATION_OVERLAP = timedelta(hours=24)


@transaction.atomic
def signing_secret_rotate(*, user_id: int, now: datetime | None = None) -> str:
    """Make the user a new signing secret and return it: the only time it is shown. The one it
    replaces keeps signing for ROTATION_OVERLAP (one previous secret: rotating again within that time
    ends the older one at once)."""
    now = now or timezone.now()
    secret = new_signing_secret()
    row = SigningSecret.objects.select_for_update().filter(user_id=user_id).first()
    if row is None:
        SigningSecret.objects.create(user_id=user_id, current_encrypted=encrypt_secret(secret), created_at=now)
        return secret
    row.previous_encrypted = row.current_encrypted
    row.previous_valid_until = now + ROTATION_OVERLAP
    row.current_encrypted = encrypt_secret(secret)
    row.created_at = now
    row.save(update_fields=["previous_encrypted", "previous_valid_until", "current_encrypted", "created_at"])
    return secret


def _ensure_secrets(user_ids: set[int], now: datetime) -> None:
    """Give every user without a secret one (never shown: the user rotates to get one they can see).
    A delivery is always signed, even before its owner asked for a secret."""
    have = set(SigningSecret.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True))
    for user_id in sorted(user_ids - have):
        try:
            with transaction.atomic():
                SigningSecret.objects.create(
                    user_id=user_id, current_encrypted=encrypt_secret(new_signing_secret()), created_at=now
                )
        except IntegrityError:
            pass  # made meanwhile by a rotation or another worker: that one signs


def signing_secrets_for_users(user_ids: Iterable[int], *, now: datetime | None = None) -> dict[int, tuple[str, ...]]:
    """The secrets that sign each user's deliveries now: the current one, then the previous one while
    its overlap lasts; those that cannot be decrypted are left out (an empty tuple when none can).
    One query for many users (a batch of deliveries); makes missing secrets."""
    now = now or timezone.now()
    wanted = set(user_ids)
    if not wanted:
        return {}
    _ensure_secrets(wanted, now)
    found: dict[int, tuple[str, ...]] = {}
    for row in SigningSecret.objects.filter(user_id__in=wanted):
        keys: list[str] = []
        encrypted = [row.current_encrypted] + ([row.previous_encrypted] if row.previous_is_valid(now) else [])
        for token in encrypted:
            try:
                keys.append(decrypt_secret(token))
            except SecretUnreadable:
                # Written under a key no longer in WEBHOOK_SECRETS_KEYS. Only this user is affected: the
                # others still sign; with no readable secret left, the user's deliveries fail (see
                # orders.webhooks) until a new secret is made.
                logger.error("a webhook signing secret of user %s cannot be decrypted", row.user_id)
        found[row.user_id] = tuple(keys)
    return found
