"""The auth API under /api/auth/. Views translate HTTP to service calls and service errors to HTTP."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import Token

from accounts import services
from accounts.api.serializers import (
    CredentialsSerializer,
    ErrorDetailSerializer,
    LogoutSerializer,
    MeUpdateSerializer,
    RefreshSerializer,
    SessionSerializer,
    TokenPairSerializer,
    UserSerializer,
    WebhookSecretSerializer,
)
from accounts.authentication import BEARER_CHALLENGE
from accounts.models import User
from accounts.requests import request_user
from accounts.throttling import Throttled, client_ip
from accounts.tokens import TokenPair
from webhooks.services import signing_secret_rotate

INVALID_CREDENTIALS = "Invalid email or password."
TOO_MANY_ATTEMPTS = "Too many attempts."

# Errors these views answer themselves; the shared ones (400, 413, 415, 503, and 401 on authenticated
# operations) are added to every operation by common.api.schema.add_error_responses.
THROTTLED = OpenApiResponse(ErrorDetailSerializer, description="Too many attempts; retry after Retry-After seconds.")
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[429], description="Seconds until the limit resets."
)
BAD_CREDENTIALS = OpenApiResponse(ErrorDetailSerializer, description="Unknown email or wrong password (one message).")
BAD_REFRESH = OpenApiResponse(ErrorDetailSerializer, description="Refresh token invalid, expired, reused or revoked.")


def _throttled(exc: Throttled) -> exceptions.Throttled:
    return exceptions.Throttled(wait=exc.retry_after, detail=TOO_MANY_ATTEMPTS)


def _session_body(user: User, pair: TokenPair) -> dict[str, Any]:
    return {"user": UserSerializer(user).data, "access": pair.access, "refresh": pair.refresh}


def _access_token(request: Request) -> Token:
    # RevocableJWTAuthentication, the only authenticator, puts the validated token here.
    assert isinstance(request.auth, Token)
    return request.auth


class PublicAuthView(APIView):
    """No authentication (a stale Authorization header must not block signing in), but 401s still
    carry the Bearer challenge: without one DRF would turn them into 403s."""

    authentication_classes: list[type[Any]] = []
    permission_classes = [AllowAny]

    def get_authenticate_header(self, request: Request) -> str:
        return BEARER_CHALLENGE


class SignupView(PublicAuthView):
    @extend_schema(
        request=CredentialsSerializer, responses={201: SessionSerializer, 429: THROTTLED}, parameters=[RETRY_AFTER]
    )
    def post(self, request: Request) -> Response:
        data = CredentialsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = services.user_signup(**data.validated_data, ip=client_ip(request))
        except Throttled as exc:
            raise _throttled(exc) from exc
        pair = services.token_pair_issue(user=user)
        return Response(_session_body(user, pair), status=status.HTTP_201_CREATED)


class LoginView(PublicAuthView):
    @extend_schema(
        request=CredentialsSerializer,
        responses={200: SessionSerializer, 401: BAD_CREDENTIALS, 429: THROTTLED},
        parameters=[RETRY_AFTER],
    )
    def post(self, request: Request) -> Response:
        data = CredentialsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            user = services.user_login(**data.validated_data, ip=client_ip(request))
        except Throttled as exc:
            raise _throttled(exc) from exc
        except services.InvalidCredentials as exc:
            raise exceptions.AuthenticationFailed(INVALID_CREDENTIALS, code="invalid_credentials") from exc
        pair = services.token_pair_issue(user=user)
        return Response(_session_body(user, pair))


class RefreshView(PublicAuthView):
    @extend_schema(request=RefreshSerializer, responses={200: TokenPairSerializer, 401: BAD_REFRESH})
    def post(self, request: Request) -> Response:
        data = RefreshSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            pair = services.token_refresh(refresh=data.validated_data["refresh"])
        except services.InvalidRefreshToken as exc:
            raise exceptions.AuthenticationFailed(
                "Refresh token is invalid, expired or revoked.", code="token_not_valid"
            ) from exc
        return Response({"access": pair.access, "refresh": pair.refresh})


class MeView(APIView):
    @extend_schema(responses=UserSerializer)
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request_user(request)).data)

    @extend_schema(
        request=MeUpdateSerializer, responses={200: UserSerializer, 429: THROTTLED}, parameters=[RETRY_AFTER]
    )
    def patch(self, request: Request) -> Response:
        user = request_user(request)
        data = MeUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = data.validated_data
        try:
            # All or nothing: a bad time zone must not leave a half-applied password change.
            with transaction.atomic():
                if "new_password" in changes:
                    services.user_change_password(
                        user=user,
                        old_password=changes["old_password"],
                        new_password=changes["new_password"],
                        current_token=_access_token(request),
                        ip=client_ip(request),
                    )
                services.user_update_profile(user=user, time_zone=changes.get("time_zone"))
        except Throttled as exc:
            raise _throttled(exc) from exc
        return Response(UserSerializer(user).data)


class LogoutView(APIView):
    @extend_schema(request=LogoutSerializer, responses={204: None})
    def post(self, request: Request) -> Response:
        data = LogoutSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.user_logout(
            user=request_user(request), access=_access_token(request), refresh=data.validated_data.get("refresh")
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        services.user_logout_all(user=request_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookSecretView(APIView):
    @extend_schema(
        request=None,
        responses={200: WebhookSecretSerializer},
        description=(
            "Make a new webhook signing secret (the first, or a rotation) and return it: the only time it is "
            "shown. After a rotation the previous secret also signs deliveries for 24 hours."
        ),
    )
    def post(self, request: Request) -> Response:
        secret = signing_secret_rotate(user_id=request_user(request).pk)
        # A secret shown once must not be kept by any cache on the way.
        return Response({"secret": secret}, headers={"Cache-Control": "no-store"})
