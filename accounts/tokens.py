from __future__ import annotations

from typing import Any


def user_can_authenticate(user: Any) -> bool:
    """simplejwt hook: deactivated users' tokens stop working at once."""
    return user is not None and bool(user.is_active)
