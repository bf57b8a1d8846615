"""Site-wide response rules: a dependency outage is a clear 503 on every page (the API has its own
handler), and nothing that carries a user's data is kept in a browser's or a proxy's cache."""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)


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
        signed_in = not api and request.user.is_authenticated
        response = self.get_response(request)
        if api or signed_in or request.user.is_authenticated:
            add_never_cache_headers(response)
        return response
