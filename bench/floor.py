"""The API's floor: what Django itself costs on this machine for the work each endpoint cannot avoid.

Served by the same web server command as the product (scripts/web), against the same MariaDB and Redis,
with the project's settings. These three have no middleware, no DRF, no authentication and no
validation:
- GET /floor/hello: an empty JSON response (Django's request cycle alone);
- GET /floor/list?user=N: the 50 newest orders of user N, one raw SELECT dumped as JSON;
- POST /floor/create?user=N: one order row inserted by a raw INSERT in a transaction, one Redis ZADD.
And the same list and create behind what no API request may skip, the fixed stack's authentication:
- GET /floor/auth/list, POST /floor/auth/create: a DRF APIView with the product's authentication
  (the JWT's signature and claims, then its revocation and the user read in one Redis round trip:
  accounts/authentication.py), permission, parser (the create's JSON body is parsed) and renderer
  (settings.REST_FRAMEWORK), for the token's user; no validation, no service, no middleware, and the
  create writes no job at all (one INSERT, in autocommit: one statement, as the product's): no
  design of the product can do less per request and keep its authentication.
The product can at best approach these rates; a target above the floor cannot be met by tuning the
application (bench/harness.py, scenario_api, reports product / floor in the same run).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
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


def _page(user_id: int) -> list[dict[str, object]]:
    columns, sql = _list_query()
    with connection.cursor() as cursor:
        cursor.execute(sql, [user_id])
        return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def _insert(user_id: int, *, job: bool = True, autocommit: bool = False) -> int:
    """The floor's INSERT, in a transaction as the issue defined it (four statements on MariaDB:
    SET autocommit=0, INSERT, COMMIT, SET autocommit=1), or with `autocommit` alone, as the
    product's create sends it."""
    from orders import jobqueue

    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with transaction.atomic() if not autocommit else contextlib.nullcontext(), connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, [user_id, FAR_FUTURE, FAR_FUTURE, now, now])
        order_id = int(cursor.lastrowid)
    if job:
        jobqueue.connection().zadd("bench:floor", {str(order_id): 1924992000})
    return order_id


def list_orders(request: HttpRequest) -> HttpResponse:
    rows = _page(int(request.GET["user"]))
    body = json.dumps({"count": len(rows), "results": rows})
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
def create_order(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"id": _insert(int(request.GET["user"]))}, status=201)


@functools.cache
def _authenticated_views() -> dict[str, Callable[..., HttpResponse]]:
    """The DRF views, built on the first request: DRF and the product's authentication import the
    models, which load only once the WSGI application below has set Django up."""
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from accounts.requests import request_user

    class AuthenticatedList(APIView):
        def get(self, request: Request) -> Response:
            rows = _page(request_user(request).pk)
            return Response({"count": len(rows), "results": rows})

    class AuthenticatedCreate(APIView):
        def post(self, request: Request) -> Response:
            # The body parsed (any create must) and the INSERT alone, in autocommit as the product
            # sends it, no job written: the least any create can do, however its job is placed.
            request.data  # noqa: B018 - parsing is the point
            return Response({"id": _insert(request_user(request).pk, job=False, autocommit=True)}, status=201)

    return {"list": AuthenticatedList.as_view(), "create": AuthenticatedCreate.as_view()}


@csrf_exempt
def authenticated_list(request: HttpRequest) -> HttpResponse:
    return _authenticated_views()["list"](request)


@csrf_exempt
def authenticated_create(request: HttpRequest) -> HttpResponse:
    return _authenticated_views()["create"](request)


urlpatterns = [
    path("floor/hello", hello),
    path("floor/list", list_orders),
    path("floor/create", create_order),
    path("floor/auth/list", authenticated_list),
    path("floor/auth/create", authenticated_create),
    path("healthz", hello),
]

# The product's web process skips the per-request connection ping (scheduler_site/wsgi.py): so does its floor.
os.environ.setdefault("CONN_HEALTH_CHECKS", "false")
application = get_wsgi_application()
