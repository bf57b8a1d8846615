"""GET /metrics: the scheduler's metrics in Prometheus' text format, for a bearer of METRICS_TOKEN.

Any web process answers for the whole system: the counters are shared in Redis and the gauges are
read from the database and Redis at scrape time (orders/metrics.py says why). Unset METRICS_TOKEN
hides the endpoint (404); a missing or wrong token is a 401.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from orders.metrics import SchedulerCollector


def _authorized(request: HttpRequest, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404  # for every method: an unconfigured endpoint does not show that it exists
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not _authorized(request, token):
        response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # A registry of our own: the default one holds only this process's numbers (its GC, its memory),
    # which would read as the system's.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SchedulerCollector())
    # The classic text format (0.0.4), which every Prometheus version reads; our names fit it.
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4)
    response["Cache-Control"] = "no-store"
    return response
