"""JWT authentication that honours revocation (see accounts/tokens.py for the claims).

On every request: signature (HS256 only), expiry and token type by simplejwt; then the jti/session
deny-list and the user (its copy in Redis, accounts/auth_state.py) in one Redis round trip and no
database read; the user must exist, be active, and the token's version must match the user's.

A token's signature and claims are checked once per process: the payload of a token that passed is
remembered by its exact text, and a later request with the same token only checks that it has not
expired since (the signing key and algorithm are simplejwt's token_backend, fixed at import).
Nothing else about a token can change while its text stays the same; what can (logout, a new token
version, a deactivated user) is the deny-list and the user, read from Redis on every request as before.
"""

from __future__ import annotations

import threading
from typing import Any

from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import aware_utcnow, get_md5_hash_password

from accounts.auth_state import user_and_denial
from accounts.tokens import deny_keys, is_denied, matches_user_version, user_id_from

BEARER_CHALLENGE = 'Bearer realm="api"'

# Tokens remembered per process; past this many, the memory starts again (a few MB at most).
VERIFIED_TOKENS_MAX = 10_000
_verified: dict[bytes, tuple[type[Token], dict[str, Any]]] = {}
_verified_lock = threading.Lock()


class RevocableJWTAuthentication(JWTAuthentication):
    www_authenticate_realm = "api"

    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's, with the signature and claims checked once per token text (module docstring).
        A remembered token that has expired since goes through simplejwt again, for its own answer."""
        remembered = _verified.get(raw_token)
        if remembered is not None:
            token_class, payload = remembered
            token = token_class.__new__(token_class)
            token.token = raw_token  # type: ignore[assignment]
            token.current_time = aware_utcnow()
            token.payload = dict(payload)
            try:
                token.check_exp()
            except TokenError:
                pass
            else:
                return token
        token = super().get_validated_token(raw_token)
        with _verified_lock:
            if len(_verified) >= VERIFIED_TOKENS_MAX:
                _verified.clear()
            # A copy: the remembered claims are never the ones a caller of this request holds.
            _verified[raw_token] = (type(token), dict(token.payload))
        return token

    def get_user(self, validated_token: Token) -> Any:
        keys = deny_keys(validated_token)
        if keys is None:
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        # A signed token is ours, but a claim that cannot be a primary key must be a 401, not a 500.
        user_id = user_id_from(validated_token)
        if user_id is None:
            if is_denied(validated_token):
                raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
            raise InvalidToken({"detail": "Token contained no recognizable user identification.", "code": "bad_user"})
        # simplejwt's get_user, with the deny-list and the user read in one round trip.
        user, denied = user_and_denial(user_id, keys)
        if denied:
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        if user is None:
            raise AuthenticationFailed(_("User not found"), code="user_not_found")
        if api_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed(_("User is inactive"), code="user_inactive")
        if api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(_("The user's password has been changed."), code="password_changed")
        if not matches_user_version(validated_token, user):
            raise AuthenticationFailed("Token has been revoked.", code="token_revoked")
        return user

    def authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE
