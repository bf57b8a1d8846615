"""Every account operation, one function each; the API views and the pages both call these.

They raise django.core.exceptions.ValidationError for bad input (a field map), Throttled when a
brute-force limit is used up, InvalidCredentials / InvalidRefreshToken for a failed sign-in.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenError
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken, Token
from rest_framework_simplejwt.utils import datetime_from_epoch

from accounts import throttling
from accounts.models import User, normalize_email_address
from accounts.tokens import (
    SESSION_CLAIM,
    VERSION_CLAIM,
    TokenPair,
    deny_jti,
    deny_session,
    is_denied,
    matches_user_version,
    token_pair_for,
    user_id_from,
)
from common.timezones import is_valid_time_zone

EMAIL_TAKEN = "An account with this email address already exists."
WRONG_OLD_PASSWORD = "Your old password was entered incorrectly."


class InvalidCredentials(Exception):
    """Unknown email, wrong password or deactivated account: deliberately indistinguishable."""


class InvalidRefreshToken(Exception):
    pass


@transaction.atomic
def user_signup(*, email: str, password: str, ip: str | None = None) -> User:
    throttling.signup_attempt(ip=ip)
    email = normalize_email_address(email or "")
    errors: dict[str, list[str]] = {}
    try:
        validate_email(email)
    except ValidationError as exc:
        errors["email"] = list(exc.messages)
    if "email" not in errors and User.objects.filter(email=email).exists():
        errors["email"] = [EMAIL_TAKEN]
    user = User(email=email)
    try:
        # With the user, so that UserAttributeSimilarityValidator can compare against the email.
        validate_password(password, user=user)
    except ValidationError as exc:
        errors["password"] = list(exc.messages)
    if errors:
        raise ValidationError(errors)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError as exc:
        # Two sign-ups with one email at the same moment: the unique index decides.
        raise ValidationError({"email": [EMAIL_TAKEN]}) from exc
    return user


def user_login(*, email: str, password: str, ip: str | None = None) -> User:
    """Checks the credentials under the per-account and per-IP limits; the caller starts the session."""
    email = normalize_email_address(email or "")
    attempt = throttling.LoginAttempt(email=email, ip=ip)
    attempt.begin()
    user = authenticate(None, email=email, password=password)
    if not isinstance(user, User):
        raise InvalidCredentials
    attempt.succeeded()
    return user


def token_pair_issue(*, user: User) -> TokenPair:
    """A new sign-in session for the API: a refresh token and an access token sharing a session id."""
    return token_pair_for(user)


def _revoke_session_of_reused_refresh(raw: str) -> None:
    """A rotated (blacklisted) refresh token presented again means two parties hold it: end that session."""
    try:
        payload = token_backend.decode(raw, verify=True)  # type: ignore[arg-type]  # typed as Token, takes str
    except TokenBackendError:
        return
    session_id = payload.get(SESSION_CLAIM)
    if (
        payload.get("token_type") == "refresh"
        and session_id
        and BlacklistedToken.objects.filter(token__jti=payload.get("jti")).exists()
    ):
        deny_session(str(session_id))


@transaction.atomic
def token_refresh(*, refresh: str) -> TokenPair:
    """Rotates a refresh token: exactly one caller can use it, later ones get InvalidRefreshToken."""
    try:
        token = RefreshToken(refresh)  # type: ignore[arg-type]  # simplejwt accepts the encoded string
    except (TokenError, KeyError) as exc:
        # KeyError: simplejwt looks the jti up in the blacklist before checking that the claim exists.
        _revoke_session_of_reused_refresh(refresh)
        raise InvalidRefreshToken(str(exc)) from exc
    if is_denied(token):
        raise InvalidRefreshToken("Token has been revoked.")
    user_id = user_id_from(token)
    user = User.objects.filter(pk=user_id).first() if user_id is not None else None
    if user is None or not user.is_active or not matches_user_version(token, user):
        raise InvalidRefreshToken("Token has been revoked.")
    outstanding = _outstanding(token, encoded=refresh, user=user)
    # The unique index on the blacklist row serialises concurrent refreshes of one token.
    _, created = BlacklistedToken.objects.get_or_create(token=outstanding)
    if not created:
        if token.get(SESSION_CLAIM):
            deny_session(str(token[SESSION_CLAIM]))
        raise InvalidRefreshToken("Token is blacklisted")
    return token_pair_for(user, session_id=token.get(SESSION_CLAIM))


def _outstanding(payload: Token | dict[str, Any], *, encoded: str, user: User) -> OutstandingToken:
    # Normally recorded when the token was issued; tokens minted elsewhere (plain simplejwt) are added here.
    outstanding, _ = OutstandingToken.objects.get_or_create(
        jti=payload["jti"],
        defaults={"user": user, "token": encoded, "expires_at": datetime_from_epoch(payload["exp"])},
    )
    return outstanding


@transaction.atomic
def user_logout(*, user: User, access: Token | dict[str, Any], refresh: str | None = None) -> None:
    """Ends one sign-in: the access token used, its session and the given refresh token. Other devices stay."""
    refresh_payload: dict[str, Any] | None = None
    if refresh:
        try:
            refresh_payload = token_backend.decode(refresh, verify=True)  # type: ignore[arg-type]
        except TokenBackendError as exc:
            raise ValidationError({"refresh": ["Token is invalid or expired."]}) from exc
        if refresh_payload.get("token_type") != "refresh" or not {"jti", "exp"} <= refresh_payload.keys():
            raise ValidationError({"refresh": ["This is not a refresh token."]})
        if user_id_from(refresh_payload) != user.pk:
            raise ValidationError({"refresh": ["This token belongs to another account."]})
    deny_jti(access)
    if access.get(SESSION_CLAIM):
        deny_session(str(access[SESSION_CLAIM]))
    if refresh and refresh_payload is not None:
        # The blacklist is in the database: the refresh token stays dead even if Redis loses its keys.
        BlacklistedToken.objects.get_or_create(token=_outstanding(refresh_payload, encoded=refresh, user=user))
        if refresh_payload.get(SESSION_CLAIM):
            deny_session(str(refresh_payload[SESSION_CLAIM]))


@transaction.atomic
def user_logout_all(*, user: User) -> None:
    """Ends every session of the user: all JWTs (by version) and all browser sessions (by auth hash)."""
    locked = User.objects.select_for_update().get(pk=user.pk)
    locked.token_version += 1
    locked.kept_session_id, locked.kept_session_version = "", 0
    locked.save(update_fields=["token_version", "kept_session_id", "kept_session_version"])
    user.token_version = locked.token_version
    user.kept_session_id, user.kept_session_version = "", 0


@transaction.atomic
def user_change_password(
    *,
    user: User,
    old_password: str,
    new_password: str,
    current_token: Token | dict[str, Any] | None = None,
    ip: str | None = None,
) -> None:
    """Changes the password and revokes every other token and browser session of the user.

    current_token: the (already authenticated) access token of the API call, whose session stays signed
    in. A browser caller passes none and keeps its own session with update_session_auth_hash() afterwards.
    """
    # A stolen access token must not become an unlimited password oracle: same limits as login.
    attempt = throttling.LoginAttempt(email=user.email, ip=ip)
    attempt.begin()
    if not user.check_password(old_password or ""):
        raise ValidationError({"old_password": [WRONG_OLD_PASSWORD]})
    attempt.succeeded()
    try:
        validate_password(new_password, user=user)
    except ValidationError as exc:
        raise ValidationError({"new_password": list(exc.messages)}) from exc
    locked = User.objects.select_for_update().get(pk=user.pk)
    locked.set_password(new_password)
    locked.token_version += 1
    session_id = str(current_token.get(SESSION_CLAIM) or "") if current_token is not None else ""
    if not session_id:
        locked.kept_session_id, locked.kept_session_version = "", 0
    elif session_id != locked.kept_session_id:
        # From here on, this session's tokens count from the version of the token making the change
        # (a second change from the same session keeps the floor it already has).
        locked.kept_session_id = session_id
        locked.kept_session_version = int(current_token.get(VERSION_CLAIM, 0)) if current_token is not None else 0
    locked.save(update_fields=["password", "token_version", "kept_session_id", "kept_session_version"])
    user.password, user.token_version = locked.password, locked.token_version
    user.kept_session_id, user.kept_session_version = locked.kept_session_id, locked.kept_session_version


@transaction.atomic
def user_update_profile(*, user: User, time_zone: str | None = None) -> User:
    if time_zone is not None:
        if not is_valid_time_zone(time_zone):
            raise ValidationError({"time_zone": [f"Unknown time zone {time_zone!r}; use an IANA name."]})
        user.time_zone = time_zone
        user.save(update_fields=["time_zone"])
    return user
