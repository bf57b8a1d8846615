"""WSGI entry point for the web server (granian: scripts/web, which the Procfile and the image run).

Two Django handlers: /api/ runs settings.API_MIDDLEWARE, every other path the full MIDDLEWARE (see
settings.py). Both share the settings, URLs and database connections; only the middleware differs.
"""

import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

# Before the settings load: the web process skips the per-request connection ping (settings.py says why).
os.environ.setdefault("CONN_HEALTH_CHECKS", "false")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scheduler_site.settings")

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

pages = get_wsgi_application()


def _api_handler() -> WSGIHandler:
    full = settings.MIDDLEWARE
    settings.MIDDLEWARE = settings.API_MIDDLEWARE
    try:
        return WSGIHandler()
    finally:
        settings.MIDDLEWARE = full


api = _api_handler()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    handler = api if environ.get("PATH_INFO", "").startswith("/api/") else pages
    return handler(environ, start_response)


from common.config import describe_services  # noqa: E402 - needs the settings loaded above

print(describe_services(), file=sys.stderr, flush=True)
