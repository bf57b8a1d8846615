"""What a user does to their notifications: mark them read."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.models import User
from orders.models import Notification


@transaction.atomic
def notification_mark_read(*, notification: Notification) -> None:
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])


def notification_mark_all_read(*, user: User) -> int:
    """Mark every unread notification of the user as read; returns how many there were."""
    return user.notifications.filter(read_at__isnull=True).update(read_at=timezone.now())
