"""JWTs: issuing token pairs and deciding whether a token is still current.

Every token carries three claims of ours besides simplejwt's user_id/jti/exp/iat/token_type:
- "ver": the user's token_version when the pair was issued. logout-all and a password change bump the
  version in the database, so every older token stops matching at once (an exact integer compare).
- "sid": a session id, fixed at login and kept across refresh rotations. Logout revokes the session, so
  every token of that sign-in dies (also an access token minted before the last rotation), while other
  devices keep theirs.
- jti: logout also puts the presented access token's jti on a deny-list, kept for the token's remaining life.

Tokens without "ver"/"sid" (minted by plain simplejwt, e.g. the test fixtures) count as version 0 and
belong to no session; the jti deny-list still applies to them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework_simplejwt.tokens import RefreshToken, Token

VERSION_CLAIM = "ver"
SESSION_CLAIM = "sid"
JTI_DENY_PREFIX = "jwt-deny:"
SESSION_DENY_PREFIX = "jwt-sid-deny:"
# The user's row as of its last save (see accounts/auth_state.py), read in the same MGET as the deny-list.
USER_STATE_PREFIX = "jwt-user:"


def user_can_authenticate(user: Any) -> bool:
    """simplejwt hook: deactivated users' tokens stop working at once."""
    return user is not None and bool(user.is_active)


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    session_id: str


def new_session_id() -> str:
    return secrets.token_urlsafe(16)


def token_pair_for(user: Any, *, session_id: str | None = None) -> TokenPair:
    """A fresh refresh token (recorded as outstanding, for the blacklist) and its access token."""
    session_id = session_id or new_session_id()
    refresh = RefreshToken()
    refresh[settings.SIMPLE_JWT["USER_ID_CLAIM"]] = str(user.pk)
    refresh[VERSION_CLAIM] = int(user.token_version)
    refresh[SESSION_CLAIM] = session_id
    # After the claims are set, so that the stored copy is the token the client holds.
    refresh.outstand()
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh), session_id=session_id)


def _remaining_seconds(token: Token | dict[str, Any]) -> int:
    return int(token["exp"] - datetime.now(UTC).timestamp()) + 1


def deny_jti(token: Token | dict[str, Any]) -> None:
    remaining = _remaining_seconds(token)
    if remaining > 0:
        cache.set(f"{JTI_DENY_PREFIX}{token['jti']}", 1, timeout=remaining)


def deny_session(session_id: str) -> None:
    # No token of a session outlives the newest refresh token, which lives REFRESH_TOKEN_LIFETIME at most.
    timeout = int(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"].total_seconds()) + 1
    cache.set(f"{SESSION_DENY_PREFIX}{session_id}", 1, timeout=timeout)


def deny_keys(token: Token | dict[str, Any]) -> list[str] | None:
    """The deny-list keys that revoke this token (its jti, its session); None for a token without a jti."""
    jti = token.get("jti")
    if jti is None:
        return None
    keys = [f"{JTI_DENY_PREFIX}{jti}"]
    session_id = token.get(SESSION_CLAIM)
    if session_id:
        keys.append(f"{SESSION_DENY_PREFIX}{session_id}")
    return keys


def is_denied(token: Token | dict[str, Any]) -> bool:
    """True when the token itself or its session was logged out (one Redis round trip)."""
    keys = deny_keys(token)
    if keys is None:
        return True
    return bool(cache.get_many(keys))


def user_id_from(token: Token | dict[str, Any]) -> int | None:
    """The user id claim as a primary key, or None when it cannot be one (never a database error)."""
    raw = token.get(settings.SIMPLE_JWT["USER_ID_CLAIM"])
    text = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        return None
    return int(text)


def matches_user_version(token: Token | dict[str, Any], user: Any) -> bool:
    """Exact check against the user's token_version (see the module docstring)."""
    version = token.get(VERSION_CLAIM, 0)
    if not isinstance(version, int):
        return False
    current = int(user.token_version)
    if version == current:
        return True
    # The device that changed the password keeps its session, with the versions it had then.
    session_id = token.get(SESSION_CLAIM)
    return (
        bool(session_id) and session_id == user.kept_session_id and int(user.kept_session_version) <= version <= current
    )
