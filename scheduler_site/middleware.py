"""Site-wide response rules: request metrics, a clear 503 on every page when a dependency is down (the
API has its own handler), and nothing that carries a user's data kept in a browser's or a proxy's cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.loader import render_to_string
from django.test.signals import setting_changed
from django.urls import ResolverMatch
from django.utils.cache import add_never_cache_headers
from redis.exceptions import RedisError

from orders import metrics

logger = logging.getLogger(__name__)

_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def view_label(match: ResolverMatch | None) -> str:
    """The view that answered, as a dotted path: one label per view whatever the URL (never an id in
    it) and whichever spelling of the route (with or without its trailing slash)."""
    if match is None:
        return "<unmatched>"  # a 404 before any view, or a static file
    view = getattr(match.func, "view_class", None) or match.func
    return f"{view.__module__}.{view.__qualname__}"


class RequestMetricsMiddleware:
    """Counts and times every request by view, method and status (orders/metrics.py says where the
    counts go)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not metrics.enabled():
            return self.get_response(request)
        started = time.perf_counter()
        response = self.get_response(request)
        metrics.observe_http_request(
            view=view_label(request.resolver_match),
            method=request.method if request.method in _METHODS else "other",
            status=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


class ServiceUnavailableMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, (OperationalError, InterfaceError, RedisError)):
            return None
        logger.warning("dependency unavailable while serving %s: %r", request.path, exception)
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"detail": "The service is temporarily unavailable; please retry shortly."}, status=503
            )
        else:
            # Rendered without a request context: the context processors would hit the same outage.
            response = HttpResponse(render_to_string("503.html"), status=503)
        response["Retry-After"] = "5"
        return response


class NoStoreMiddleware:
    """`Cache-Control: no-store` on every answer to a signed-in request and on every API answer.

    Without it a browser keeps a signed-in page in its HTTP cache (and the back/forward cache), and
    Back after logging out shows the user's orders again. The API's answers carry the same data (or
    tokens) whoever is asking, and its JWT requests are authenticated only inside DRF, after this
    middleware has looked at request.user, so the whole /api/ tree is covered by path. Static files
    are served by whitenoise before this runs and keep their long cache lifetimes.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Read before the view: a logout turns request.user anonymous, and its answer is still a
        # signed-in page's (messages, a redirect the browser must not remember).
        api = request.path.startswith("/api/")
        signed_in = False if api else _is_authenticated(request)
        response = self.get_response(request)
        if api or signed_in is not False or _is_authenticated(request) is not False:
            add_never_cache_headers(response)
        return response


def _is_authenticated(request: HttpRequest) -> bool | None:
    """request.user.is_authenticated, or None when finding out needs a database or Redis that is
    down. The view's own read then fails the same way, inside ServiceUnavailableMiddleware, and the
    answer is its 503 (no-store, since who is asking is unknown), never a 500 from here."""
    try:
        return bool(request.user.is_authenticated)
    except (OperationalError, InterfaceError, RedisError):
        return None


# What a view can set on its response to change its policy (django-csp's decorators).
_PER_RESPONSE_POLICY = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
)
_static_policies: dict[bool, str] = {}


def _forget_static_policies(*, setting: str, **kwargs: object) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        _static_policies.clear()


setting_changed.connect(_forget_static_policies)


def _static_policy(report_only: bool) -> str:
    policy = _static_policies.get(report_only)
    if policy is None:
        policy = _static_policies[report_only] = build_policy(report_only=report_only)
    return policy


class StaticPolicyCSPMiddleware(CSPMiddleware):
    """django-csp's middleware with the settings' policy text built once instead of on every response
    (build_policy, twice a response, was a few percent of an API request's CPU). A response whose
    view changed its policy, or whose page asked for a nonce, goes through django-csp as before; the
    rest get the very headers django-csp would write, under its own exemptions."""

    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if getattr(request, "_csp_nonce", None) is not None or any(
            hasattr(response, name) for name in _PER_RESPONSE_POLICY
        ):
            return super().process_response(request, response)
        if response.status_code in (HTTPStatus.INTERNAL_SERVER_ERROR, HTTPStatus.NOT_FOUND) and settings.DEBUG:
            return response
        for header, report_only, exempt, setting in (
            (HEADER, False, "_csp_exempt", "CONTENT_SECURITY_POLICY"),
            (HEADER_REPORT_ONLY, True, "_csp_exempt_ro", "CONTENT_SECURITY_POLICY_REPORT_ONLY"),
        ):
            policy = _static_policy(report_only)
            if not policy or getattr(response, exempt, False) is not False or header in response:
                continue
            prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES", None) or ()
            if not request.path_info.startswith(tuple(prefixes)):
                response[header] = policy
        # As django-csp: a nonce asked for after the header was written is an error, not a silent gap.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
