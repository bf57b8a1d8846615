"""The API's floor: what Django itself costs on this machine for the work each endpoint cannot avoid.

Served by the same gunicorn command as the product (Procfile), against the same MariaDB and Redis,
with the project's settings but no middleware, no DRF, no authentication and no validation:
- GET /floor/hello: an empty JSON response (Django's request cycle alone);
- GET /floor/list?user=N: the 50 newest orders of user N, read with values() and dumped as JSON;
- POST /floor/create?user=N: one order row inserted in a transaction, then one Redis ZADD.
The product can at best approach these rates; a target above the floor cannot be met by tuning the
application (bench/harness.py, scenario_api, reports product / floor in the same run).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from django.core.wsgi import get_wsgi_application
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

LIST_FIELDS = (
    "id",
    "order_name",
    "schedule_time",
    "time_zone",
    "status",
    "is_recurring",
    "repeat_interval",
    "repeat_unit",
    "max_executions",
    "executions_count",
    "misfire_policy",
    "next_run_at",
    "last_run_at",
    "last_result",
    "created_at",
    "updated_at",
)
FAR_FUTURE = datetime(2031, 1, 1, tzinfo=UTC)


def hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def list_orders(request: HttpRequest) -> HttpResponse:
    from orders.models import Order

    rows = list(
        Order.objects.filter(user_id=int(request.GET["user"])).order_by("-created_at").values(*LIST_FIELDS)[:50]
    )
    body = json.dumps({"count": len(rows), "results": rows}, default=str)
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
def create_order(request: HttpRequest) -> HttpResponse:
    from orders import scheduling
    from orders.models import Order

    with transaction.atomic():
        order = Order.objects.create(
            user_id=int(request.GET["user"]),
            order_name="floor",
            schedule_time=FAR_FUTURE,
            next_run_at=FAR_FUTURE,
            execution_limit=1,
        )
    scheduling.connection().zadd("bench:floor", {str(order.pk): FAR_FUTURE.timestamp()})
    return JsonResponse({"id": order.pk}, status=201)


urlpatterns = [
    path("floor/hello", hello),
    path("floor/list", list_orders),
    path("floor/create", create_order),
    path("healthz", hello),
]

application = get_wsgi_application()
