"""Reads of the webhooks app, scoped to the user."""

from __future__ import annotations

from webhooks.models import SigningSecret


def signing_secret_get_for_user(*, user_id: int) -> SigningSecret | None:
    """The user's secret row (encrypted; for showing when it was made), None before the first one."""
    return SigningSecret.objects.filter(user_id=user_id).first()
