"""The user's row in Redis, so that an API request authenticates without reading the database.

Every request reads the token's deny-list keys and this copy of the user in ONE round trip (MGET,
see user_and_denial). The copy is exact, not a cache with a lifetime to wait out:
- a save or delete of a user (services, admin, tests) drops the copy inside its transaction and,
  once it commits, writes it again from the row read under the row's lock (post_save/post_delete,
  connected in accounts/apps.py). Those writes take turns on the lock and each reads the row as it
  is then, so the last one writes the newest row; a rolled-back save only dropped the copy;
- a missing copy is never trusted as "nothing changed": it is read from the database and added only
  if nothing wrote one meanwhile (SET NX), so a reader that read the row just before a save cannot
  put the older row back after the save's own write. A deleted user's copy is a tombstone.
A QuerySet.update() of token_version, is_active or password would bypass all this: the services
save() those fields (accounts/services.py).
"""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.db import transaction

from accounts.models import User
from accounts.selectors import user_get_by_id
from accounts.tokens import USER_STATE_PREFIX

# Unused copies go away; a copy read again after that is read from the database once.
STATE_TIMEOUT_SECONDS = 24 * 3600
# What the copy of a deleted (or never existing) user says: its tokens are refused as user_not_found.
NO_USER = "no-user"


def user_state_key(user_id: int) -> str:
    return f"{USER_STATE_PREFIX}{user_id}"


def publish_user_state(user_id: int) -> None:
    """Rewrite the user's copy from the row, read under its lock (a deleted row: the tombstone)."""
    with transaction.atomic():
        user = User.objects.select_for_update().filter(pk=user_id).first()
        cache.set(user_state_key(user_id), user if user is not None else NO_USER, timeout=STATE_TIMEOUT_SECONDS)


def user_saved(sender: Any, instance: User, raw: bool = False, **kwargs: Any) -> None:
    """post_save / post_delete receiver for User (see the module docstring)."""
    if instance.pk is None:
        return
    user_id = int(instance.pk)
    # Dropped now, so that a request in this transaction, or after a rollback, reads the row itself.
    cache.delete(user_state_key(user_id))
    transaction.on_commit(lambda: publish_user_state(user_id))


def user_state_from_database(user_id: int) -> User | None:
    """The user read from the database after a missing copy, added as the copy unless a save wrote one."""
    user = user_get_by_id(user_id)
    cache.add(user_state_key(user_id), user if user is not None else NO_USER, timeout=STATE_TIMEOUT_SECONDS)
    return user


def user_and_denial(user_id: int, deny_keys: list[str]) -> tuple[User | None, bool]:
    """(the user or None when there is none, whether any of deny_keys is set): one MGET, and a
    database read only when the copy is missing."""
    state_key = user_state_key(user_id)
    found = cache.get_many([state_key, *deny_keys])
    denied = any(key in found for key in deny_keys)
    if state_key not in found:
        return (None if denied else user_state_from_database(user_id)), denied
    state = found[state_key]
    return (state if isinstance(state, User) else None), denied
