"""Forms for the order pages. They shape browser input into service arguments; every rule about what
an order may be (future time, caps, minimum interval) stays in orders.services."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from common.forms import add_service_errors, time_zone_field
from common.timezones import grouped_choices, is_selectable, unknown_zone_message
from orders.models import MisfirePolicy, Order, OrderStatus, OverlapPolicy, RepeatUnit
from orders.recurrence import ScheduleOverflow, resolve_wall_time, zone
from orders.services.orders import MAX_PAUSE_AFTER_FAILURES
from orders.webhooks import TARGET_URL_MAX_LENGTH, payload_problem

MAX_INTERVAL = 2_147_483_647
MAX_EXECUTIONS = 1_000_000
# What a datetime-local input sends (seconds appear when step < 60).
WALL_TIME_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S")
ONCE, RECURRING = "once", "recurring"
# How a recurring order repeats: every N units, or on a calendar (a cron expression).
INTERVAL, CALENDAR = "interval", "calendar"
# Presets for the cron field (static/js/order-form.js puts the schedule time's hour and minute in).
CRON_PRESETS = (
    ("Every weekday at…", "{minute} {hour} * * 1-5"),
    ("Every Monday at…", "{minute} {hour} * * 1"),
    ("First of the month at…", "{minute} {hour} 1 * *"),
    ("Last day of the month at…", "{minute} {hour} L * *"),
)


def wall_time_text(value: datetime, time_zone: str) -> str:
    """An aware instant as the value of a datetime-local input, on the wall clock of `time_zone`."""
    return value.astimezone(zone(time_zone)).strftime("%Y-%m-%dT%H:%M:%S")


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (json.loads accepts them), and the database refuses them.
    raise ValueError(f"{name} is not JSON")


class WallTimeField(forms.Field):
    """A date-time as typed, without a zone: it is read later in the zone chosen on the same form.

    Django's DateTimeField would attach the server's zone at once, which is the wrong one.
    """

    widget = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S")
    default_error_messages = {"invalid": "Enter a date and time, e.g. 2030-01-31 09:00."}

    def to_python(self, value: Any) -> datetime | None:
        if value in self.empty_values:
            return None
        if isinstance(value, datetime):
            return value.replace(tzinfo=None)
        text = str(value).strip()
        for fmt in WALL_TIME_FORMATS:
            try:
                return datetime.strptime(text, fmt)
            except ValueError:
                continue
        raise ValidationError(self.error_messages["invalid"], code="invalid")


class OrderForm(forms.Form):
    """One form for creating and editing; switching `kind` is how an order is converted."""

    order_name = forms.CharField(label="Name", max_length=255, strip=False)
    kind = forms.ChoiceField(
        label="Type",
        choices=[(ONCE, "One-time"), (RECURRING, "Recurring")],
        widget=forms.RadioSelect(attrs={"class": "kind-choice"}),
        initial=ONCE,
    )
    schedule_time = WallTimeField(
        label="Schedule time", help_text="When it runs (the first run of a recurring order), in the time zone below."
    )
    time_zone = time_zone_field()
    repeat_kind = forms.ChoiceField(
        label="Repeats",
        choices=[(INTERVAL, "At an interval"), (CALENDAR, "On a calendar (cron)")],
        widget=forms.RadioSelect(attrs={"class": "repeat-kind-choice"}),
        initial=INTERVAL,
        required=False,
    )
    cron = forms.CharField(
        label="Cron expression",
        required=False,
        strip=False,
        help_text="minute hour day-of-month month day-of-week, in the time zone above; e.g. 30 9 * * 1-5. "
        "It starts at the schedule time.",
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off", "class": "mono"}),
    )
    end_at = WallTimeField(label="Ends", required=False, help_text="Optional: no run after this time.")
    repeat_interval = forms.IntegerField(label="Every", min_value=1, max_value=MAX_INTERVAL, required=False)
    repeat_unit = forms.ChoiceField(label="Unit", choices=RepeatUnit.choices, required=False, initial="days")
    unlimited = forms.BooleanField(label="Unlimited executions", required=False)
    max_executions = forms.IntegerField(
        label="Max executions", min_value=1, max_value=MAX_EXECUTIONS, required=False, help_text="Stop after this many."
    )
    misfire_policy = forms.ChoiceField(
        label="Missed runs",
        choices=MisfirePolicy.choices,
        initial=MisfirePolicy.RUN_ONCE,
        help_text="What happens to runs that fell due while the service was down or the order paused.",
    )
    overlap_policy = forms.ChoiceField(
        label="Overlapping runs",
        choices=OverlapPolicy.choices,
        initial=OverlapPolicy.WAIT,
        required=False,
        help_text="What a run does when it falls due while the previous run of this order is still going.",
    )
    pause_after_failures = forms.IntegerField(
        label="Pause after failures",
        min_value=1,
        max_value=MAX_PAUSE_AFTER_FAILURES,
        required=False,
        help_text="Optional: pause the order after this many runs in a row failed (after their retries); "
        "you are notified with the last error. Empty: never.",
    )
    target_url = forms.CharField(
        label="Webhook URL",
        max_length=TARGET_URL_MAX_LENGTH,
        required=False,
        strip=True,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/orders", "inputmode": "url"}),
        help_text="Optional. Each run POSTs a signed JSON message here (https; see the account page for the secret).",
    )
    payload = forms.CharField(
        label="Payload (JSON)",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 5, "spellcheck": "false", "class": "code"}),
        help_text='Optional. A JSON object of at most 16 kB, sent with every run, e.g. {"sku": "A-100"}.',
    )

    def __init__(self, *args: Any, order: Order | None = None, **kwargs: Any) -> None:
        self.order = order
        if order is not None and "initial" not in kwargs:
            kwargs["initial"] = self.initial_for(order)
        super().__init__(*args, **kwargs)
        if order is not None and not is_selectable(order.time_zone):
            field = self.fields["time_zone"]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [("This order's zone", [(order.time_zone, order.time_zone)]), *grouped_choices()]

    def full_clean(self) -> None:
        super().full_clean()
        self._mark_invalid_fields()

    def _mark_invalid_fields(self) -> None:
        # Screen readers then announce the error text together with the field.
        for name in self.errors:
            if name in self.fields:
                self.fields[name].widget.attrs.update({"aria-invalid": "true", "aria-describedby": f"id_{name}_error"})

    @staticmethod
    def initial_for(order: Order) -> dict[str, Any]:
        return {
            "order_name": order.order_name,
            "kind": RECURRING if order.is_recurring else ONCE,
            "schedule_time": wall_time_text(order.schedule_time, order.time_zone),
            "time_zone": order.time_zone,
            "repeat_interval": order.repeat_interval,
            "repeat_unit": order.repeat_unit or "days",
            "repeat_kind": CALENDAR if order.cron else INTERVAL,
            "cron": order.cron or "",
            "end_at": wall_time_text(order.end_at, order.time_zone) if order.end_at else "",
            "unlimited": order.is_recurring and order.max_executions is None,
            "max_executions": order.max_executions,
            "misfire_policy": order.misfire_policy,
            "overlap_policy": order.overlap_policy,
            # "" rather than None: what the empty input sends back (tests post initial data as it is).
            "pause_after_failures": "" if order.pause_after_failures is None else order.pause_after_failures,
            "target_url": order.target_url,
            "payload": json.dumps(order.payload, indent=2, ensure_ascii=False) if order.payload is not None else "",
        }

    def clean_order_name(self) -> str:
        name: str = self.cleaned_data["order_name"]
        if not name.strip():
            raise ValidationError("Enter a name.")
        return name

    def clean_time_zone(self) -> str:
        name: str = self.cleaned_data["time_zone"]
        # An order made before the zone list was narrowed may keep its old name.
        if not is_selectable(name) and (self.order is None or name != self.order.time_zone):
            raise ValidationError(unknown_zone_message(name))
        return name

    def clean_payload(self) -> dict[str, Any] | None:
        text: str = self.cleaned_data["payload"]
        if not text:
            return None
        try:
            value = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ValidationError('Enter valid JSON, e.g. {"sku": "A-100", "quantity": 3}.') from exc
        problem = payload_problem(value)
        if problem is not None:
            raise ValidationError(problem)
        return dict(value)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        wants_maximum = data.get("kind") == RECURRING and not data.get("unlimited")
        if wants_maximum and data.get("max_executions") is None and "max_executions" not in self.errors:
            self.add_error("max_executions", "Give a number, or tick Unlimited.")
        wall, tz_name = data.get("schedule_time"), data.get("time_zone")
        if wall is not None and tz_name:
            try:
                data["schedule_at"] = resolve_wall_time(wall, tz_name)
            except ScheduleOverflow:
                self.add_error("schedule_time", "The date-time is out of range.")
        end_wall = data.get("end_at")
        if end_wall is not None and tz_name:
            try:
                data["end_at_instant"] = resolve_wall_time(end_wall, tz_name)
            except ScheduleOverflow:
                self.add_error("end_at", "The date-time is out of range.")
        if self.on_calendar and not (data.get("cron") or "").strip() and "cron" not in self.errors:
            self.add_error("cron", "Enter a cron expression, or pick one of the presets.")
        return data

    @property
    def on_calendar(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return data.get("kind") == RECURRING and data.get("repeat_kind") == CALENDAR

    def _schedule_time_unchanged(self) -> bool:
        """The edit form sends back the shown wall time; unless it or the zone was changed, the stored
        instant (which may carry sub-seconds, or lie in the past for a recurring order) is kept."""
        if self.order is None or self.cleaned_data.get("time_zone") != self.order.time_zone:
            return False
        # Compared as wall times, not text: browsers send 09:30 for 09:30:00.
        shown = self.order.schedule_time.astimezone(zone(self.order.time_zone)).replace(tzinfo=None, microsecond=0)
        return bool(self.cleaned_data.get("schedule_time") == shown)

    def changes(self) -> dict[str, Any]:
        """Service arguments (OrderDefinition fields) from the cleaned data."""
        data = self.cleaned_data
        recurring = data["kind"] == RECURRING
        changes: dict[str, Any] = {
            "order_name": data["order_name"],
            "time_zone": data["time_zone"],
            "is_recurring": recurring,
            "repeat_interval": data.get("repeat_interval") if recurring and not self.on_calendar else None,
            "repeat_unit": (data.get("repeat_unit") or None) if recurring and not self.on_calendar else None,
            "cron": data.get("cron") if self.on_calendar else None,
            "end_at": data.get("end_at_instant") if recurring else None,
            "max_executions": None if not recurring or data.get("unlimited") else data.get("max_executions"),
            "misfire_policy": data["misfire_policy"],
        }
        # A browser always sends both; a scripted post that leaves one out keeps the order's (or the default).
        if "overlap_policy" in self.data:
            changes["overlap_policy"] = data.get("overlap_policy") or OverlapPolicy.WAIT
        if "pause_after_failures" in self.data:
            changes["pause_after_failures"] = data.get("pause_after_failures")
        # Sent only when changed, so that saving an unrelated edit does not re-check the target's DNS.
        for name in ("target_url", "payload"):
            current = getattr(self.order, name) if self.order is not None else None
            if self.order is None or data.get(name) != current:
                changes[name] = data.get(name) if name == "payload" else (data.get(name) or "")
        if not self._schedule_time_unchanged():
            changes["schedule_time"] = data.get("schedule_at")
        return changes

    def partial_changes(self) -> dict[str, Any]:
        """changes() of an invalid form: only the definition fields that did clean."""
        data = self.cleaned_data
        changes: dict[str, Any] = {
            name: data[name] for name in ("order_name", "time_zone", "misfire_policy") if name in data
        }
        if data.get("overlap_policy"):
            changes["overlap_policy"] = data["overlap_policy"]
        if "pause_after_failures" in data and "pause_after_failures" in self.data:
            changes["pause_after_failures"] = data["pause_after_failures"]
        if "kind" in data:
            recurring = data["kind"] == RECURRING
            changes["is_recurring"] = recurring
            if recurring:
                changes.update({name: data[name] for name in ("repeat_interval", "max_executions") if name in data})
                if "repeat_unit" in data:
                    changes["repeat_unit"] = data["repeat_unit"] or None
                if self.on_calendar:
                    # The interval fields are hidden then: not checked, not shown.
                    changes.pop("repeat_interval", None)
                    changes.pop("repeat_unit", None)
                    if data.get("cron"):
                        changes["cron"] = data["cron"]
                if data.get("end_at_instant") is not None:
                    changes["end_at"] = data["end_at_instant"]
                if data.get("unlimited"):
                    changes["max_executions"] = None
        if data.get("schedule_at") is not None and not self._schedule_time_unchanged():
            changes["schedule_time"] = data["schedule_at"]
        return changes

    def add_definition_errors(self, errors: dict[str, list[str]], *, checked: set[str]) -> None:
        """A service's errors (orders.services.order_definition_errors) for the fields in `checked`
        that have none of their own yet: every mistake on the form is shown at once."""
        for field, messages in errors.items():
            target = "kind" if field == "is_recurring" else field
            if field in checked and target in self.fields and target not in self.errors:
                for message in messages:
                    self.add_error(target, message)
        self._mark_invalid_fields()

    def add_service_errors(self, error: ValidationError) -> None:
        """Show a services ValidationError beside the fields it names (the rest above the form)."""
        add_service_errors(self, error, field_map={"is_recurring": "kind"})
        self._mark_invalid_fields()


class OrderFilterForm(forms.Form):
    """The dashboard's filters; anything invalid is ignored rather than an error page."""

    q = forms.CharField(label="Search by name", max_length=255, required=False)
    status = forms.ChoiceField(label="Status", choices=[("", "Any status"), *OrderStatus.choices], required=False)
    type = forms.ChoiceField(
        label="Type", choices=[("", "Any type"), (ONCE, "One-time"), (RECURRING, "Recurring")], required=False
    )

    sort = forms.CharField(required=False, max_length=20)

    def sort_key(self) -> str | None:
        """The column the dashboard is sorted by (orders.selectors.PAGE_SORTS), or None."""
        return (self.cleaned_data.get("sort") or None) if self.is_valid() else None

    def selector_arguments(self) -> dict[str, Any]:
        if not self.is_valid():
            return {}
        data = self.cleaned_data
        kind = data.get("type")
        return {
            "status": data.get("status") or None,
            "is_recurring": None if not kind else kind == RECURRING,
            "search": data.get("q") or None,
        }
