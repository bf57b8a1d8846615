from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models


class SigningSecret(models.Model):
    """A user's webhook signing secret, encrypted (webhooks.secrets). Shown once, when made or rotated.

    After a rotation the previous secret keeps signing (a second signature in webhook-signature) until
    previous_valid_until, so receivers can switch over without dropping deliveries."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="webhook_signing_secret"
    )
    current_encrypted = models.TextField()
    previous_encrypted = models.TextField(blank=True, default="")
    previous_valid_until = models.DateTimeField(null=True, blank=True)
    # When the current secret was made.
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"webhook signing secret of user {self.user_id}"

    def previous_is_valid(self, now: datetime) -> bool:
        until = self.previous_valid_until
        return bool(self.previous_encrypted) and until is not None and now < until
