"""Shape and type-check order data. Semantic rules (future, horizon, caps) live in the services."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Any, ClassVar

from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import empty
from rest_framework.utils.serializer_helpers import BindingDict

from common.timezones import is_selectable, is_valid_time_zone, unknown_zone_message
from orders.api.representation import ORDER_JSON_FIELDS
from orders.calendar_rules import CronError, parse_cron
from orders.models import Execution, MisfirePolicy, Notification, Order, OrderStatus, OverlapPolicy, RepeatUnit
from orders.recurrence import zone
from orders.selectors import ORDERINGS
from orders.services.orders import MAX_PAUSE_AFTER_FAILURES
from orders.webhooks import TARGET_URL_MAX_LENGTH, payload_problem

MAX_INTERVAL = 2_147_483_647
MAX_EXECUTIONS = 1_000_000


def in_order_offset(value: datetime | None, time_zone: str) -> str | None:
    """An instant as ISO 8601 with the offset of the order's zone (UTC when the stored name is
    unknown): every time in an order's answers, its executions' included, reads on one clock."""
    if value is None:
        return None
    tz = zone(time_zone) if is_valid_time_zone(time_zone) else UTC
    return value.astimezone(tz).isoformat()


@extend_schema_field(OpenApiTypes.DATETIME)
class ZonedDateTimeField(serializers.Field):
    """ISO 8601 text. A naive value is read in the order's time zone (resolved later, when the zone is
    known); output carries the order's offset."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date-time such as 2030-01-31T09:00:00+01:00.",
        "range": "The date-time is out of range.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        # Python 3.11's fromisoformat (used by parse_datetime) stops at a NUL and accepts the rest.
        if not isinstance(data, str) or not data.isprintable():
            self.fail("invalid")
        try:
            value = parse_datetime(data.strip())
        except ValueError:
            self.fail("invalid")
        if value is None:
            self.fail("invalid")
        assert value is not None
        if value.tzinfo is not None:
            try:
                value.astimezone(UTC)
            except OverflowError:
                self.fail("range")
        return value

    def to_representation(self, value: datetime) -> str:
        order = getattr(self.parent, "instance", None)
        tz_name = getattr(order, "time_zone", None) if isinstance(order, Order) else None
        tz = zone(tz_name) if tz_name and is_valid_time_zone(tz_name) else UTC
        return value.astimezone(tz).isoformat()


class StrictCharField(serializers.CharField):
    """A CharField that takes only JSON strings: DRF's would turn 12 or 1.5 into "12" / "1.5"."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: DRF's would also take 0, 1, "yes", "off" and the like."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class OrderSerializer(serializers.ModelSerializer[Order]):
    order_id = serializers.IntegerField(read_only=True)
    user_id = serializers.IntegerField(read_only=True)
    schedule_time = serializers.SerializerMethodField()
    next_run_at = serializers.SerializerMethodField()
    last_run_at = serializers.SerializerMethodField()
    end_at = serializers.SerializerMethodField()
    created_at = serializers.SerializerMethodField()
    updated_at = serializers.SerializerMethodField()
    executions_remaining = serializers.IntegerField(read_only=True, allow_null=True)
    cron = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The 5-field cron expression of a cron order (minute hour day-of-month month day-of-week), "
        "in time_zone; null otherwise.",
    )
    consecutive_failures = serializers.IntegerField(
        read_only=True,
        help_text="Executions in a row that failed for good (after their retries); a success resets it.",
    )
    schedule_description = serializers.CharField(
        read_only=True,
        help_text="The schedule in plain English, e.g. 'At 09:30, Monday through Friday (Europe/Berlin)'.",
    )

    class Meta:
        model = Order
        # The one field list of the order's JSON shape (the fast path, representation.py, builds it too).
        fields = list(ORDER_JSON_FIELDS)
        read_only_fields = fields

    def _zoned(self, order: Order, value: datetime | None) -> str | None:
        return in_order_offset(value, order.time_zone)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_schedule_time(self, order: Order) -> str | None:
        return self._zoned(order, order.schedule_time)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_run_at(self, order: Order) -> str | None:
        return self._zoned(order, order.next_run_at)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_last_run_at(self, order: Order) -> str | None:
        return self._zoned(order, order.last_run_at)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_end_at(self, order: Order) -> str | None:
        return self._zoned(order, order.end_at)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_created_at(self, order: Order) -> str | None:
        return self._zoned(order, order.created_at)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_updated_at(self, order: Order) -> str | None:
        return self._zoned(order, order.updated_at)


class OrderWriteSerializer(serializers.Serializer[Any]):
    """Input for create (all required fields) and update (partial=True for PATCH).

    Read-only fields (order_id, user, status, executions_count, job_id, next_run_at, ...) are ignored
    if sent: the server owns them.

    The bound fields are built once per value of `partial` and shared by every instance: DRF's own
    `fields` deep-copies the 15 declared fields for each request, an eighth of a create's CPU. That is
    safe because these fields keep no per-request state while validating: what they read from their
    parent is only `root.partial` (the same in every instance that shares them) and its empty context;
    the serializer's own validate_<name> and validate methods still run on the instance. Nothing reads
    this serializer's output (answers are built by orders/api/representation.py).
    """

    _shared_fields: ClassVar[dict[bool, BindingDict]] = {}

    order_name = StrictCharField(max_length=255, trim_whitespace=False)
    schedule_time = ZonedDateTimeField(required=False, allow_null=True)
    is_recurring = StrictBooleanField(required=False, default=False)
    repeat_interval = serializers.IntegerField(min_value=1, max_value=MAX_INTERVAL, required=False, allow_null=True)
    repeat_unit = serializers.ChoiceField(choices=RepeatUnit.choices, required=False, allow_null=True)
    max_executions = serializers.IntegerField(min_value=1, max_value=MAX_EXECUTIONS, required=False, allow_null=True)
    time_zone = StrictCharField(max_length=64, required=False)
    misfire_policy = serializers.ChoiceField(choices=MisfirePolicy.choices, required=False)
    overlap_policy = serializers.ChoiceField(
        choices=OverlapPolicy.choices,
        required=False,
        help_text="When an occurrence falls due while a run of this order is still going: wait for it (default), "
        "skip the occurrence (recorded as skipped, with the reason), or allow the runs to overlap.",
    )
    pause_after_failures = serializers.IntegerField(
        min_value=1,
        max_value=MAX_PAUSE_AFTER_FAILURES,
        required=False,
        allow_null=True,
        help_text="Pause the order by itself after this many executions in a row failed for good (after their "
        "retries); the owner is notified with the last error, and resume works as usual. null: never.",
    )
    cron = StrictCharField(
        required=False,
        allow_null=True,
        trim_whitespace=False,
        help_text="A 5-field cron expression (minute hour day-of-month month day-of-week; lists, ranges, steps, "
        "names such as MON and JAN, L, LW, 5L and 5#2), read in time_zone: the order is recurring and runs at "
        "each match at or after schedule_time. Not together with repeat_interval and repeat_unit.",
    )
    end_at = ZonedDateTimeField(
        required=False,
        allow_null=True,
        help_text="Recurring orders: no run after this time (with max_executions, whichever comes first).",
    )

    @cached_property
    def fields(self) -> BindingDict:
        partial = bool(self.partial)
        shared = self._shared_fields.get(partial)
        if shared is None:
            # Bound to a prototype with no data and no context; two threads racing here build two
            # equal sets and one is kept.
            prototype = type(self)(partial=partial)
            shared = BindingDict(prototype)
            for name, field in prototype.get_fields().items():
                shared[name] = field
            self._shared_fields[partial] = shared
        return shared

    def validate_cron(self, value: str | None) -> str | None:
        # The expression alone; what depends on the rest (its zone, start, the minimum interval) is
        # checked by the service.
        if value is None:
            return None
        try:
            return parse_cron(value)
        except CronError as exc:
            raise serializers.ValidationError(str(exc)) from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A cron order is recurring: is_recurring may be left out.
        if attrs.get("cron") is not None and "is_recurring" not in self.initial_data:
            attrs["is_recurring"] = True
        return attrs

    target_url = StrictCharField(
        max_length=TARGET_URL_MAX_LENGTH,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text=(
            "Webhook target (docs/WEBHOOKS.md): each execution POSTs a signed JSON message here. https only "
            '(http for allowed hosts); no private or loopback addresses. "" for none.'
        ),
    )
    payload = serializers.JSONField(
        required=False,
        allow_null=True,
        help_text="A JSON object of at most 16 kB, sent as the webhook's data.payload.",
    )

    def validate_payload(self, value: Any) -> Any:
        problem = payload_problem(value)
        if problem is not None:
            raise serializers.ValidationError(problem)
        return value

    def validate_time_zone(self, value: str) -> str:
        if not is_selectable(value):
            raise serializers.ValidationError(unknown_zone_message(value))
        return value

    def validate_order_name(self, value: str) -> str:
        if not value.strip():
            raise serializers.ValidationError("Enter a name.")
        return value


class DeliverySerializer(serializers.Serializer[Any]):
    """One webhook delivery's record (webhooks.delivery.DeliveryResult.as_record)."""

    outcome = serializers.ChoiceField(choices=["succeeded", "retryable", "failed"])
    status_code = serializers.IntegerField(allow_null=True, help_text="The receiver's HTTP status; null if none.")
    latency_ms = serializers.IntegerField(allow_null=True)
    response_excerpt = serializers.CharField(
        allow_blank=True, help_text="The first 1 kB of the response body, as text (never HTML)."
    )
    error = serializers.CharField(allow_blank=True)
    retry_after_seconds = serializers.FloatField(allow_null=True)
    address = serializers.CharField(allow_blank=True, help_text="The IP address the request went to.")


class TestDeliverySerializer(DeliverySerializer):
    webhook_id = serializers.CharField()


class ThrottledSerializer(serializers.Serializer[Any]):
    """Shape of a 429 answer (documentation only)."""

    detail = serializers.CharField()


class ExecutionSerializer(serializers.ModelSerializer[Execution]):
    """An execution of `context["order"]`, its times in that order's offset."""

    scheduled_for = serializers.SerializerMethodField()
    started_at = serializers.SerializerMethodField()
    finished_at = serializers.SerializerMethodField()
    attempt_history = serializers.SerializerMethodField()
    delivery = serializers.SerializerMethodField(
        help_text="The latest attempt's webhook delivery (each attempt_history entry has its own)."
    )

    @extend_schema_field(DeliverySerializer(allow_null=True))
    def get_delivery(self, execution: Execution) -> dict[str, Any] | None:
        return execution.latest_delivery

    class Meta:
        model = Execution
        fields = [
            "id",
            "occurrence",
            "kind",
            "scheduled_for",
            "started_at",
            "finished_at",
            "status",
            "attempts",
            "error",
            "attempt_history",
            "result_ref",
            "skip_reason",
            "delivery",
        ]
        read_only_fields = fields

    def _time_zone(self, execution: Execution) -> str:
        order = self.context.get("order") or execution.order
        return str(order.time_zone)

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_scheduled_for(self, execution: Execution) -> str | None:
        return in_order_offset(execution.scheduled_for, self._time_zone(execution))

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_started_at(self, execution: Execution) -> str | None:
        return in_order_offset(execution.started_at, self._time_zone(execution))

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_finished_at(self, execution: Execution) -> str | None:
        return in_order_offset(execution.finished_at, self._time_zone(execution))

    @extend_schema_field(serializers.ListField(child=serializers.DictField()))
    def get_attempt_history(self, execution: Execution) -> list[Any]:
        # Each attempt's began_at and finished_at are stored as UTC text; shown on the order's clock like the rest.
        tz_name = self._time_zone(execution)
        history = []
        for entry in execution.attempt_history:
            entry = dict(entry)
            for field in ("began_at", "finished_at"):
                moment = parse_datetime(entry[field]) if isinstance(entry.get(field), str) else None
                if moment is not None and moment.tzinfo is not None:
                    entry[field] = in_order_offset(moment, tz_name)
            history.append(entry)
        return history


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    order_id = serializers.IntegerField(read_only=True, allow_null=True)
    read = serializers.SerializerMethodField()

    class Meta:
        model = Notification
        fields = ["id", "order_id", "kind", "message", "created_at", "read_at", "read"]
        read_only_fields = fields

    def get_read(self, notification: Notification) -> bool:
        return notification.read_at is not None


class UpcomingSerializer(serializers.Serializer[Any]):
    order_id = serializers.IntegerField()
    time_zone = serializers.CharField()
    upcoming = serializers.ListField(child=serializers.DateTimeField())


def _query_value(field: serializers.Field, query: Any) -> Any:
    # DRF reads an empty query value of an optional field as absent: here a parameter that is
    # present must be valid, even when empty ("?status=" is not "any status").
    return query.get(field.field_name, empty)


class QueryChoiceField(serializers.ChoiceField):
    def get_value(self, dictionary: Any) -> Any:
        return _query_value(self, dictionary)


class QueryBooleanField(serializers.Field):
    """true/false (or 1/0, any case) in a query string; anything else is an error."""

    def get_value(self, dictionary: Any) -> Any:
        return _query_value(self, dictionary)

    default_error_messages = {"invalid": "Use true or false."}
    VALUES = {"true": True, "1": True, "false": False, "0": False}

    def to_internal_value(self, data: Any) -> bool:
        value = self.VALUES.get(str(data).lower())
        if value is None:
            self.fail("invalid")
        return bool(value)

    def to_representation(self, value: bool) -> bool:
        return value


def _choose_one_of(choices: list[str]) -> dict[str, Any]:
    return {"invalid_choice": f"Choose one of: {', '.join(choices)}."}


class OrderListFilterSerializer(serializers.Serializer[Any]):
    """The list's query string. A parameter that is present must be valid, even when empty:
    "?status=" is not "any status"."""

    status = QueryChoiceField(
        choices=list(OrderStatus.values), required=False, error_messages=_choose_one_of(list(OrderStatus.values))
    )
    is_recurring = QueryBooleanField(required=False)
    search = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    ordering = QueryChoiceField(
        choices=sorted(ORDERINGS), required=False, error_messages=_choose_one_of(sorted(ORDERINGS))
    )

    def validate_search(self, value: str) -> str | None:
        if len(value) > 255:
            raise serializers.ValidationError("At most 255 characters.")
        if "\x00" in value:
            # No name contains NUL, and SQLite would cut the pattern there and match every order.
            raise serializers.ValidationError("The search cannot contain NUL characters.")
        return value or None

    def selector_arguments(self) -> dict[str, Any]:
        """The validated filters as orders.selectors.order_page_for_user's arguments."""
        data = self.validated_data
        return {name: data.get(name) for name in self._declared_fields}

    @classmethod
    def arguments_for(cls, query_params: Any) -> dict[str, Any]:
        """selector_arguments() of these query parameters (a 400 for invalid ones). A query string
        with none of the filters in it (a plain page) is no filter at all: the answer without
        building the serializer, which costs more than the rest of the validation together."""
        if not any(name in query_params for name in cls._declared_fields):
            return dict.fromkeys(cls._declared_fields)
        filters = cls(data=query_params)
        filters.is_valid(raise_exception=True)
        return filters.selector_arguments()


class NotificationListFilterSerializer(serializers.Serializer[Any]):
    unread = QueryBooleanField(required=False)
