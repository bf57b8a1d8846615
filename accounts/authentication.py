"""JWT authentication that honours revocation.

simplejwt's blacklist covers refresh tokens only. Access tokens are revoked two ways:
- logout puts the access token's jti on a deny-list in Redis, kept for the token's remaining life;
- logout-all and a password change stamp user.tokens_valid_after; older tokens are refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken
from rest_framework_simplejwt.tokens import Token

DENY_PREFIX = "jwt-deny:"


def deny_key(jti: str) -> str:
    return f"{DENY_PREFIX}{jti}"


def revoke_token(token: Token | dict[str, Any]) -> None:
    jti, exp = token["jti"], token["exp"]
    remaining = int(exp - datetime.now(UTC).timestamp()) + 1
    if remaining > 0:
        cache.set(deny_key(jti), 1, timeout=remaining)


def is_revoked(token: Token | dict[str, Any]) -> bool:
    jti = token.get("jti")
    return jti is None or cache.get(deny_key(str(jti))) is not None


class RevocableJWTAuthentication(JWTAuthentication):
    www_authenticate_realm = "api"

    def get_validated_token(self, raw_token: bytes) -> Token:
        token = super().get_validated_token(raw_token)
        if is_revoked(token):
            raise InvalidToken({"detail": "Token has been revoked.", "code": "token_revoked"})
        return token

    def get_user(self, validated_token: Token) -> Any:
        user = super().get_user(validated_token)
        valid_after = getattr(user, "tokens_valid_after", None)
        if valid_after is not None and int(validated_token.get("iat", 0)) < int(valid_after.timestamp()):
            raise AuthenticationFailed("Token has been revoked.", code="token_revoked")
        return user

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'
