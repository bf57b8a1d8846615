"""JWT authentication that honours revocation (see accounts/tokens.py for the claims).

On every request: signature (HS256 only), expiry and token type by simplejwt; then the jti/session
deny-list and the user (its copy in Redis, accounts/auth_state.py) in one Redis round trip and no
database read; the user must exist, be active, and the token's version must match the user's.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.auth_state import user_and_denial
from accounts.tokens import deny_keys, is_denied, matches_user_version, user_id_from

BEARER_CHALLENGE = 'Bearer realm="api"'


class RevocableJWTAuthentication(JWTAuthentication):
    www_authenticate_realm = "api"

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
