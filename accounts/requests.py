"""The signed-in user of a request, for views behind login_required or IsAuthenticated."""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from accounts.models import User


def request_user(request: HttpRequest | Request) -> User:
    """The request's user, typed as the real User: the view's login_required (pages) or
    IsAuthenticated (the API's default permission) guarantees one."""
    user = request.user
    assert isinstance(user, User)
    return user
