"""The API's floor: what Django itself costs on this machine for the work each endpoint cannot avoid.

Served by the same web server command as the product (scripts/web), against the same MariaDB and Redis,
with the project's settings but no middleware, no DRF, no authentication and no validation:
- GET /floor/hello: an empty JSON response (Django's request cycle alone);
- GET /floor/list?user=N: the 50 newest orders of user N, one raw SELECT dumped as JSON;
- POST /floor/create?user=N: one order row inserted by a raw INSERT in a transaction, one Redis ZADD.
The product can at best approach these rates; a target above the floor cannot be met by tuning the
application (bench/harness.py, scenario_api, reports product / floor in the same run).
"""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime

from django.core.wsgi import get_wsgi_application
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


# Raw SQL, not the ORM, so that this is a floor the product cannot undercut: times are read as text
# (MySQLdb's DATETIME conversion is slow) and nothing is converted or validated.
@functools.cache
def _list_query() -> tuple[tuple[str, ...], str]:
    """The product's page columns (orders.selectors.ORDER_ROW_COLUMNS) and the SELECT of them. Read
    on the first request: the models load only once the WSGI application has set Django up."""
    from orders.selectors import ORDER_ROW_COLUMNS

    selected = ", ".join(f"CAST({c} AS CHAR)" if c.endswith(("_time", "_at")) else c for c in ORDER_ROW_COLUMNS)
    # Built from the model's column names; the user id is a parameter.
    sql = f"SELECT {selected} FROM orders_order WHERE user_id = %s ORDER BY created_at DESC, id DESC LIMIT 50"  # noqa: S608
    return ORDER_ROW_COLUMNS, sql


INSERT_SQL = (
    "INSERT INTO orders_order (user_id, order_name, schedule_time, time_zone, status, job_id, is_recurring,"
    " executions_count, misfire_policy, schedule_version, next_grid_index, next_run_at, execution_limit,"
    " occurrence_seq, last_result, idempotency_fingerprint, target_url, created_at, updated_at)"
    " VALUES (%s, 'floor', %s, 'UTC', 'scheduled', '', 0, 0, 'run_once', 1, 1, %s, 1, 0, '', '', '', %s, %s)"
)
FAR_FUTURE = "2031-01-01 00:00:00"


def hello(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def list_orders(request: HttpRequest) -> HttpResponse:
    columns, sql = _list_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(request.GET["user"])])
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    body = json.dumps({"count": len(rows), "results": rows})
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
def create_order(request: HttpRequest) -> HttpResponse:
    from orders import jobqueue

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, [int(request.GET["user"]), FAR_FUTURE, FAR_FUTURE, now, now])
        order_id = cursor.lastrowid
    jobqueue.connection().zadd("bench:floor", {str(order_id): 1924992000})
    return JsonResponse({"id": order_id}, status=201)


urlpatterns = [
    path("floor/hello", hello),
    path("floor/list", list_orders),
    path("floor/create", create_order),
    path("healthz", hello),
]

# The product's web process skips the per-request connection ping (scheduler_site/wsgi.py): so does its floor.
os.environ.setdefault("CONN_HEALTH_CHECKS", "false")
application = get_wsgi_application()
