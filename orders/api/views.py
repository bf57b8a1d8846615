"""The orders API. Views shape requests and responses; every write is a service call."""

from __future__ import annotations

from typing import Any

from django.db import connection
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import UserRateThrottle
from rest_framework.views import APIView

from accounts.requests import request_user
from common.api.pagination import PagePagination
from orders import selectors, services
from orders.api.representation import order_as_json, orders_as_json
from orders.api.serializers import (
    ExecutionSerializer,
    NotificationListFilterSerializer,
    NotificationSerializer,
    OrderListFilterSerializer,
    OrderSerializer,
    OrderWriteSerializer,
    TestDeliverySerializer,
    ThrottledSerializer,
    UpcomingSerializer,
)
from orders.models import Order, OrderStatus
from orders.recurrence import ScheduleOverflow, resolve_wall_time

CREATE_EXAMPLES = [
    OpenApiExample(
        "One-time order",
        value={"order_name": "Buy 10 AAPL", "schedule_time": "2030-01-31T09:00:00+01:00"},
        request_only=True,
    ),
    OpenApiExample(
        "Recurring order",
        value={
            "order_name": "Weekly restock",
            "schedule_time": "2030-01-06T09:00:00",
            "time_zone": "Europe/Berlin",
            "is_recurring": True,
            "repeat_interval": 1,
            "repeat_unit": "weeks",
            "max_executions": 10,
            "misfire_policy": "run_once",
            "overlap_policy": "skip",
            "pause_after_failures": 3,
        },
        request_only=True,
    ),
    OpenApiExample(
        "Cron order: 09:30 on weekdays",
        description=(
            "A cron order is recurring (is_recurring may be left out) and runs at each match at or after "
            "schedule_time (default: now) in time_zone; a missing wall time runs later by the gap, a repeated "
            "one once. The answer says it in words: schedule_description."
        ),
        value={
            "order_name": "Morning report",
            "cron": "30 9 * * 1-5",
            "time_zone": "Europe/Berlin",
            "end_at": "2030-12-31T23:59:59",
        },
        request_only=True,
    ),
    OpenApiExample(
        "A cron order, as answered",
        value={
            "order_id": 42,
            "user_id": 7,
            "order_name": "Morning report",
            "schedule_time": "2030-01-06T08:12:40.512000+01:00",
            "status": "scheduled",
            "job_id": "order-42-v1-k1-3f9c",
            "is_recurring": True,
            "repeat_interval": None,
            "repeat_unit": None,
            "cron": "30 9 * * 1-5",
            "max_executions": None,
            "end_at": "2030-12-31T23:59:59+01:00",
            "executions_count": 0,
            "executions_remaining": None,
            "time_zone": "Europe/Berlin",
            "misfire_policy": "run_once",
            "overlap_policy": "wait",
            "pause_after_failures": None,
            "consecutive_failures": 0,
            "next_run_at": "2030-01-07T09:30:00+01:00",
            "last_run_at": None,
            "last_result": "",
            "created_at": "2030-01-06T07:12:40.515000Z",
            "updated_at": "2030-01-06T07:12:40.530000Z",
            "schedule_description": "At 09:30, Monday through Friday (Europe/Berlin)",
        },
        response_only=True,
        status_codes=["201"],
    ),
    OpenApiExample(
        "Every month on the 31st",
        description="On the anchor's day of the month, or the last day of shorter months, at its wall time.",
        value={
            "order_name": "Month-end close",
            "schedule_time": "2030-01-31T18:00:00",
            "time_zone": "Europe/Berlin",
            "is_recurring": True,
            "repeat_interval": 1,
            "repeat_unit": "months",
        },
        request_only=True,
    ),
]


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID, say) of at most 128 visible ASCII characters, chosen by the client for "
        "this create. Sent again with the same body, as after a 503 or a dropped connection, it answers "
        "201 with the order the first attempt created (and `Idempotent-Replayed: true`) instead of "
        "creating a second one. Sent with a different body it answers 422."
    ),
)
RUN_KEY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string of at most 128 visible ASCII characters, chosen by the client for this run-now "
        "or retry. Sent again for the same order, as after a 503 or a dropped connection, it answers 202 "
        "with `Idempotent-Replayed: true` and queues nothing more (a repeated retry without a key retries "
        "the next most recent failed run)."
    ),
)


def _replayed_header(code: int) -> OpenApiParameter:
    return OpenApiParameter(
        "Idempotent-Replayed",
        str,
        OpenApiParameter.HEADER,
        response=[code],
        description="`true` when the Idempotency-Key had already been used for this; absent otherwise.",
    )


IDEMPOTENCY_KEY_MAX_LENGTH = 128


def _idempotency_key(request: Request) -> str | None:
    raw = request.headers.get("Idempotency-Key")
    if raw is None:
        return None
    # The IETF draft sends it as a structured-field string ("..."); most clients send it bare.
    key = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw
    if not key or len(key) > IDEMPOTENCY_KEY_MAX_LENGTH or not all("!" <= c <= "~" for c in key):
        raise ValidationError(
            {"Idempotency-Key": [f"Give 1 to {IDEMPOTENCY_KEY_MAX_LENGTH} visible ASCII characters, no spaces."]}
        )
    return key


def _user_time_zone(request: Request) -> str:
    return getattr(request.user, "time_zone", None) or "UTC"


def _changes_from(data: dict[str, Any], *, time_zone: str) -> dict[str, Any]:
    """Validated serializer data -> service arguments (naive times read in the order's zone)."""
    changes = dict(data)
    tz_name = changes.get("time_zone") or time_zone
    for name in ("schedule_time", "end_at"):
        if changes.get(name) is not None:
            try:
                changes[name] = resolve_wall_time(changes[name], tz_name)
            except ScheduleOverflow as exc:
                raise ValidationError({name: ["The date-time is out of range."]}) from exc
    return changes


def _valid_or_every_error(
    serializer: OrderWriteSerializer, request: Request, *, time_zone: str, order: Order | None
) -> dict[str, Any]:
    """The serializer's validated data; when some fields do not parse, a 400 that also carries what
    the service would say about the fields that do (all of a request's field errors in one answer)."""
    if serializer.is_valid():
        return dict(serializer.validated_data)
    errors: dict[str, list[str]] = {name: [str(m) for m in messages] for name, messages in serializer.errors.items()}
    data = request.data if isinstance(request.data, dict) else {}
    rest = OrderWriteSerializer(data={k: v for k, v in data.items() if k not in errors}, partial=True)
    if rest.is_valid():
        try:
            changes = _changes_from(dict(rest.validated_data), time_zone=time_zone)
        except ValidationError:
            changes = {k: v for k, v in rest.validated_data.items() if k != "schedule_time"}
        if order is None:
            changes.setdefault("time_zone", time_zone)
        if "cron" in errors and data.get("cron") is not None:
            # A cron order, even when its expression did not parse: the service is shown the expression
            # as sent (its error is the one above), so it asks for no interval instead.
            changes["cron"] = data["cron"]
            if "is_recurring" not in data:
                changes["is_recurring"] = True
        for name, messages in services.order_definition_errors(changes=changes, order=order).items():
            errors.setdefault(name, messages)
    raise ValidationError(errors)


class OrderListCreateView(APIView):
    pagination_class = PagePagination

    @extend_schema(
        responses=OrderSerializer(many=True),
        parameters=[
            OpenApiParameter("status", str, enum=list(OrderStatus.values)),
            OpenApiParameter("is_recurring", bool),
            OpenApiParameter("search", str, description="Part of the order name (case-insensitive)."),
            OpenApiParameter("ordering", str, enum=sorted(selectors.ORDERINGS)),
        ],
    )
    def get(self, request: Request) -> Response:
        arguments = OrderListFilterSerializer.arguments_for(request.query_params)
        paginator = self.pagination_class()
        # Rows, not model instances, times left as the database's text, and a hand-built shape: the
        # same JSON as OrderSerializer, at a fraction of the CPU (see selectors.order_page_for_user
        # and orders/api/representation.py).
        rows = paginator.paginate_rows(
            lambda offset, limit: selectors.order_page_for_user(
                user=request.user,
                offset=offset,
                limit=limit,
                times_as_text=True,
                **arguments,
            ),
            request,
        )
        return paginator.get_paginated_response(orders_as_json(rows, db_text_zone=connection.timezone))

    @extend_schema(
        request=OrderWriteSerializer,
        responses={201: OrderSerializer},
        examples=CREATE_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, _replayed_header(201)],
    )
    def post(self, request: Request) -> Response:
        serializer = OrderWriteSerializer(data=request.data)
        valid = _valid_or_every_error(serializer, request, time_zone=_user_time_zone(request), order=None)
        changes = _changes_from(valid, time_zone=_user_time_zone(request))
        changes.setdefault("time_zone", _user_time_zone(request))
        # Absent is not the same as invalid: the service answers "required" (or "now" for recurring).
        changes.setdefault("schedule_time", None)
        order, replayed = services.order_create_once(
            user=request_user(request),
            definition=services.OrderDefinition(**changes),
            idempotency_key=_idempotency_key(request),
        )
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(order_as_json(order), status=status.HTTP_201_CREATED, headers=headers)


class OrderCreateView(OrderListCreateView):
    """The original system's path, kept for its clients: POST only."""

    http_method_names = ["post", "options"]

    @extend_schema(
        request=OrderWriteSerializer,
        responses={201: OrderSerializer},
        examples=CREATE_EXAMPLES,
        parameters=[IDEMPOTENCY_KEY, _replayed_header(201)],
        operation_id="orders_create_legacy",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)


class OrderDetailView(APIView):
    def _order(self, request: Request, order_id: int) -> Order:
        return selectors.order_get_for_user(user=request.user, order_id=order_id)

    @extend_schema(responses=OrderSerializer)
    def get(self, request: Request, order_id: int) -> Response:
        return Response(order_as_json(self._order(request, order_id)))

    def _update(self, request: Request, order_id: int, *, partial: bool) -> Response:
        order = self._order(request, order_id)
        serializer = OrderWriteSerializer(data=request.data, partial=partial)
        valid = _valid_or_every_error(serializer, request, time_zone=order.time_zone, order=order)
        changes = _changes_from(valid, time_zone=order.time_zone)
        order = services.order_update(order=order, changes=changes)
        return Response(order_as_json(order))

    @extend_schema(request=OrderWriteSerializer, responses=OrderSerializer)
    def put(self, request: Request, order_id: int) -> Response:
        return self._update(request, order_id, partial=False)

    @extend_schema(request=OrderWriteSerializer, responses=OrderSerializer)
    def patch(self, request: Request, order_id: int) -> Response:
        return self._update(request, order_id, partial=True)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, order_id: int) -> Response:
        services.order_delete(order=self._order(request, order_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OrderExecutionsView(APIView):
    pagination_class = PagePagination

    @extend_schema(responses=ExecutionSerializer(many=True))
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        paginator = self.pagination_class()
        qs: QuerySet[Any] = selectors.execution_list_for_order(order=order)
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ExecutionSerializer(page, many=True, context={"order": order}).data)


class OrderUpcomingView(APIView):
    @extend_schema(
        parameters=[OpenApiParameter("count", int, description="1 to 100 (default 5).")],
        responses=UpcomingSerializer,
    )
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        raw = request.query_params.get("count", "5")
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100:
            raise ValidationError({"count": ["A whole number from 1 to 100."]})
        return Response(
            {
                "order_id": order.pk,
                "time_zone": order.time_zone,
                "upcoming": [t.isoformat() for t in selectors.upcoming_runs(order=order, count=int(raw))],
            }
        )


class OrderActionView(APIView):
    """POST /pause, /resume."""

    action: str = ""

    @extend_schema(request=None, responses=OrderSerializer)
    def post(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        operation = {"pause": services.order_pause, "resume": services.order_resume}[self.action]
        operation(order=order)
        order.refresh_from_db()
        return Response(order_as_json(order))


class OrderRunView(APIView):
    """POST /run-now, /retry: 202, the execution is queued, not done. With an Idempotency-Key, a
    repeat (after a 503 whose commit had landed, say) queues nothing more."""

    action: str = ""

    @extend_schema(request=None, responses={202: OrderSerializer}, parameters=[RUN_KEY, _replayed_header(202)])
    def post(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        operation = {"run-now": services.order_run_now_once, "retry": services.order_retry_once}[self.action]
        _, replayed = operation(order=order, idempotency_key=_idempotency_key(request))
        order.refresh_from_db()
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(order_as_json(order), status=status.HTTP_202_ACCEPTED, headers=headers)


class TestDeliveryThrottle(UserRateThrottle):
    """Each test delivery is an outgoing request on the user's say-so: a few a minute are plenty."""

    scope = "test_delivery"
    rate = "20/min"


class OrderTestDeliveryView(APIView):
    """POST /test-delivery: one signed request to the order's target now, its result in the answer.
    Not an execution (nothing is counted or retried)."""

    throttle_classes = [TestDeliveryThrottle]

    @extend_schema(
        request=None,
        responses={
            200: TestDeliverySerializer,
            429: OpenApiResponse(
                ThrottledSerializer, description="More than 20 test deliveries a minute; retry after Retry-After."
            ),
        },
        parameters=[
            OpenApiParameter(
                "Retry-After", int, OpenApiParameter.HEADER, response=[429], description="Seconds until allowed."
            )
        ],
    )
    def post(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get_for_user(user=request.user, order_id=order_id)
        sent = services.order_send_test_delivery(order=order)
        return Response({"webhook_id": sent.webhook_id, **sent.result.as_record()})


class NotificationListView(APIView):
    pagination_class = PagePagination

    @extend_schema(parameters=[OpenApiParameter("unread", bool)], responses=NotificationSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = NotificationListFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        unread = bool(filters.validated_data.get("unread"))
        qs = selectors.notification_list_for_user(user=request.user, unread_only=unread)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(NotificationSerializer(page, many=True).data)


class NotificationReadView(APIView):
    @extend_schema(request=None, responses=NotificationSerializer)
    def post(self, request: Request, notification_id: int) -> Response:
        notification = selectors.notification_get_for_user(user=request.user, notification_id=notification_id)
        services.notification_mark_read(notification=notification)
        return Response(NotificationSerializer(notification).data)
