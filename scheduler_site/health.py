"""GET /healthz: the state of every dependency, 200 when all are up, 503 otherwise."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse

from orders import jobqueue

# The scheduler writes its heartbeat every poll; older than this means it is not running.
SCHEDULER_STALE_SECONDS = 30


def healthz(request: HttpRequest) -> JsonResponse:
    body: dict[str, Any] = {}
    ok = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        body["database"] = {"ok": True, "vendor": connection.vendor}
    except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
        body["database"] = {"ok": False, "error": type(exc).__name__}
        ok = False
    try:
        jobqueue.connection().ping()
        body["redis"] = {"ok": True, "embedded": settings.REDIS_EMBEDDED}
        beat = jobqueue.read_heartbeat()
        age = None if beat is None else round(time.time() - beat, 3)
        scheduler_ok = age is not None and age < SCHEDULER_STALE_SECONDS
        body["scheduler"] = {"ok": scheduler_ok, "last_heartbeat": beat, "age_seconds": age}
        live = jobqueue.live_worker_count()
        body["workers"] = {"ok": live > 0, "live": live}
        ok = ok and scheduler_ok and live > 0
    except Exception as exc:  # noqa: BLE001
        body["redis"] = {"ok": False, "error": type(exc).__name__}
        body["scheduler"] = {"ok": False, "last_heartbeat": None, "age_seconds": None}
        body["workers"] = {"ok": False, "live": 0}
        ok = False
    body["status"] = "ok" if ok else "degraded"
    return JsonResponse(body, status=200 if ok else 503)
