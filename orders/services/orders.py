"""What a user does to an order's definition: create, update, pause, resume and delete.

Services take keyword arguments, validate, write the database in one transaction, and touch Redis
only after that transaction commits (orders/dispatch.py). They raise
django.core.exceptions.ValidationError with field errors for bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from common import tracing
from common.timezones import is_valid_time_zone
from common.transactions import atomic_with_retry, with_retry
from orders import sql
from orders.calendar_rules import cron_problems, normalize_cron
from orders.dispatch import (
    OccurrenceJob,
    cancel_job_after_commit,
    place_occurrence_jobs,
    schedule_execution_job,
    schedule_next_occurrence,
)
from orders.events import log_event
from orders.models import (
    ACTIVE_ORDER_STATUSES,
    FINISHED_ORDER_STATUSES,
    INFLIGHT_EXECUTION_STATUSES,
    WAITING_EXECUTION_STATUSES,
    MisfirePolicy,
    Order,
    OrderStatus,
    OverlapPolicy,
    RepeatUnit,
)
from orders.recurrence import Grid, ScheduleOverflow, first_index_due_at_or_after, interval_seconds, occurrence_due
from orders.status import POLICY_FIELDS, pause_and_cancel_job, settle_status_and_notify
from orders.webhooks import webhook_field_errors

logger = logging.getLogger(__name__)

MAX_PAUSE_AFTER_FAILURES = 1000


@dataclass
class OrderDefinition:
    """What a user can set on an order. schedule_time is aware (naive input is resolved by the caller)."""

    order_name: str
    schedule_time: datetime | None
    is_recurring: bool = False
    repeat_interval: int | None = None
    repeat_unit: str | None = None
    max_executions: int | None = None
    time_zone: str = "UTC"
    misfire_policy: str = MisfirePolicy.RUN_ONCE
    # A recurring order has either repeat_interval and repeat_unit or a cron expression.
    cron: str | None = None
    end_at: datetime | None = None  # aware

    # The webhook (docs/WEBHOOKS.md): "" = none; a JSON object of at most 16 kB or None.
    target_url: str = ""
    payload: dict[str, Any] | None = None

    # Failure and overlap policies (README, schedule semantics): pause by itself after this many
    # executions in a row failed for good (None = never); what an occurrence due while a run of the
    # order is still going does.
    pause_after_failures: int | None = None
    overlap_policy: str = OverlapPolicy.WAIT

    def grid(self) -> Grid:
        """The grid this definition describes (what validation checks)."""
        assert self.schedule_time is not None
        return Grid.of(
            self.schedule_time,
            self.time_zone,
            is_recurring=self.is_recurring,
            interval=self.repeat_interval,
            unit=self.repeat_unit,
            cron=self.cron,
            end_at=self.end_at,
        )


# --- validation -------------------------------------------------------------------------------------


def validate_definition(
    definition: OrderDefinition, *, now: datetime, schedule_time_changed: bool, executions_count: int = 0
) -> None:
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    name = definition.order_name
    if not name or not name.strip():
        add("order_name", "Enter a name.")
    elif len(name) > 255:
        add("order_name", "At most 255 characters.")
    elif "\x00" in name:
        add("order_name", "The name cannot contain NUL characters.")

    if not is_valid_time_zone(definition.time_zone):
        add("time_zone", f"Unknown time zone {definition.time_zone!r}: use an IANA name such as Europe/Berlin.")

    if definition.misfire_policy not in MisfirePolicy.values:
        add("misfire_policy", f"Choose one of: {', '.join(MisfirePolicy.values)}.")
    if definition.overlap_policy not in OverlapPolicy.values:
        add("overlap_policy", f"Choose one of: {', '.join(OverlapPolicy.values)}.")
    limit = definition.pause_after_failures
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
        add("pause_after_failures", "A whole number, or empty for never.")
    elif limit is not None and not 1 <= limit <= MAX_PAUSE_AFTER_FAILURES:
        add("pause_after_failures", f"Between 1 and {MAX_PAUSE_AFTER_FAILURES}, or empty for never.")

    st = definition.schedule_time
    if st is None:
        add("schedule_time", "This field is required.")
    elif schedule_time_changed:
        if st < now - timedelta(seconds=settings.ORDER_PAST_GRACE_SECONDS):
            add("schedule_time", "The time must be in the future.")
        elif st > now + timedelta(days=settings.ORDER_SCHEDULE_HORIZON_DAYS):
            add("schedule_time", f"The time must be within {settings.ORDER_SCHEDULE_HORIZON_DAYS} days.")

    cron, end_at = definition.cron, definition.end_at
    if cron is not None and not definition.is_recurring:
        add("cron", "A cron order is recurring: send is_recurring true, or leave it out.")
    if end_at is not None:
        if not definition.is_recurring:
            add("end_at", "Only a recurring order has an end: leave end_at out for a one-time order.")
        elif st is not None and end_at < st:
            add("end_at", "end_at must be after schedule_time.")

    if definition.is_recurring:
        if cron is not None:
            if definition.repeat_interval is not None or definition.repeat_unit is not None:
                add("cron", "Give either cron or repeat_interval and repeat_unit, not both.")
            elif st is not None:
                for problem in cron_problems(
                    cron,
                    time_zone=definition.time_zone,
                    start=st,
                    min_interval_seconds=settings.ORDER_MIN_INTERVAL_SECONDS,
                ):
                    add("cron", problem)
        else:
            if definition.repeat_interval is None:
                add("repeat_interval", "A recurring order needs an interval (or a cron expression).")
            elif definition.repeat_interval < 1:
                add("repeat_interval", "The interval must be at least 1.")
            if definition.repeat_unit is None:
                add("repeat_unit", "A recurring order needs a unit (or a cron expression).")
            elif definition.repeat_unit not in RepeatUnit.values:
                add("repeat_unit", f"Choose one of: {', '.join(RepeatUnit.values)}.")
        if definition.max_executions is not None:
            if definition.max_executions < 1:
                add("max_executions", "Must be at least 1, or empty for unlimited.")
            elif definition.max_executions < executions_count:
                add(
                    "max_executions",
                    f"This order has already run {executions_count} times; the maximum cannot be lower.",
                )
        if not errors and cron is None and definition.repeat_interval and definition.repeat_unit and st is not None:
            if (
                interval_seconds(definition.repeat_interval, definition.repeat_unit)
                < settings.ORDER_MIN_INTERVAL_SECONDS
            ):
                add(
                    "repeat_interval",
                    f"The interval must be at least {settings.ORDER_MIN_INTERVAL_SECONDS} seconds.",
                )
            else:
                grid = Grid(st, definition.time_zone, definition.repeat_interval, definition.repeat_unit)
                try:
                    # Refuse definitions whose second run cannot even be represented.
                    occurrence_due(grid, 2)
                except ScheduleOverflow:
                    add("repeat_interval", "The interval is so large that the next run would never come.")
        if not errors and end_at is not None:
            try:
                occurrence_due(definition.grid(), 1)
            except ScheduleOverflow:
                add("end_at", "The schedule has no run between schedule_time and end_at.")
    if errors:
        raise ValidationError(errors)


def with_field_errors(errors: dict[str, list[str]], validate: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run a validation with field errors found before it, raising them all together."""
    try:
        validate(*args, **kwargs)
    except ValidationError as exc:
        raise ValidationError({**errors, **exc.message_dict}) from exc
    if errors:
        raise ValidationError(errors)


def check_active_cap(user: User, *, exclude_order_id: int) -> None:
    """Refuse making an order active again (a resume) past ORDER_MAX_ACTIVE_PER_USER. Called inside
    the caller's transaction; it locks the user's row, so one user's creates and resumes take turns.
    A create's own check is its INSERT's (_insert_under_cap)."""
    cap = settings.ORDER_MAX_ACTIVE_PER_USER
    if sql.count_active_orders_locking_user(user, exclude_order_id=exclude_order_id) >= cap:
        raise active_cap_error(cap)


def active_cap_error(cap: int) -> ValidationError:
    return ValidationError({"non_field_errors": [f"You can have at most {cap} active orders."]})


def _apply_limit(order: Order, *, now: datetime) -> None:
    """A new max_executions on an unchanged grid: the pending occurrence keeps its slot and its job."""
    order.execution_limit = order.max_executions
    if not order.has_runs_left:
        order.schedule_version += 1
        cancel_job_after_commit(order.job_id)
        order.job_id = ""
        order.next_run_at = None
        settle_status_and_notify(order)
    elif order.status in FINISHED_ORDER_STATUSES:
        # Raised above what it already ran: the order comes back (see resume_index).
        order.schedule_version += 1
        order.status = OrderStatus.SCHEDULED
        schedule_next_occurrence(order, grid_index=resume_index(order, now=now, from_index=order.next_grid_index))


def resume_index(order: Order, *, now: datetime, from_index: int = 1) -> int:
    """The grid slot an order resumes at when a change brings it back or moves its grid without a
    new schedule_time: the first slot due at or after the moment of the change.

    One rule for converting, raising the maximum of a finished order and a new interval on the same
    anchor: slots that were already past when the change was made are not run, not caught up and
    not written down as skipped (they were never part of what the user asked for). A pause is
    different: it keeps its grid, and what fell due meanwhile follows the misfire policy.
    """
    if not order.is_recurring:
        return from_index
    return first_index_due_at_or_after(order.grid, now, from_index)


def _apply_schedule(order: Order, *, now: datetime, restart_grid: bool) -> None:
    """(Re)compute the engine state after a definition change and schedule the next occurrence."""
    order.schedule_version += 1
    cancel_job_after_commit(order.job_id)
    order.job_id = ""
    order.next_run_at = None
    if order.is_recurring:
        order.execution_limit = order.max_executions
    # A new anchor starts the grid again at its first slot; anything else (a conversion, a new
    # interval or unit on the same anchor) continues from the first slot not yet past.
    grid_index = 1 if restart_grid else resume_index(order, now=now)
    if order.status == OrderStatus.PAUSED:
        order.next_grid_index = grid_index
        return
    if order.has_runs_left:
        schedule_next_occurrence(order, grid_index=grid_index)
        if order.status in FINISHED_ORDER_STATUSES:
            order.status = OrderStatus.SCHEDULED
    else:
        order.next_grid_index = grid_index
        settle_status_and_notify(order)


# --- user-facing operations -----------------------------------------------------------------------


def lock_order(order: Order) -> Order:
    """Re-read the order under a row lock. It may have been deleted since the caller read it: that is
    a plain not-found for the caller, never a crash."""
    locked = Order.objects.select_for_update().filter(pk=order.pk).first()
    if locked is None:
        raise Http404("Not found.")
    return locked


def order_create(
    *,
    user: User,
    definition: OrderDefinition,
    idempotency_key: str | None = None,
    idempotency_fingerprint: str = "",
) -> Order:
    # Before any lock: checking the target resolves its host name.
    webhook_errors = webhook_field_errors({"target_url": definition.target_url, "payload": definition.payload})
    now = timezone.now()
    if definition.schedule_time is None and definition.is_recurring:
        definition.schedule_time = now
    if isinstance(definition.cron, str):
        definition.cron = normalize_cron(definition.cron)
    with_field_errors(webhook_errors, validate_definition, definition, now=now, schedule_time_changed=True)
    assert definition.schedule_time is not None  # validated above
    order = Order(
        user=user,
        order_name=definition.order_name,
        schedule_time=definition.schedule_time,
        time_zone=definition.time_zone,
        is_recurring=definition.is_recurring,
        repeat_interval=definition.repeat_interval if definition.is_recurring else None,
        repeat_unit=definition.repeat_unit if definition.is_recurring else None,
        max_executions=definition.max_executions if definition.is_recurring else None,
        cron=definition.cron if definition.is_recurring else None,
        end_at=definition.end_at if definition.is_recurring else None,
        misfire_policy=definition.misfire_policy,
        overlap_policy=definition.overlap_policy,
        pause_after_failures=definition.pause_after_failures,
        target_url=definition.target_url,
        payload=definition.payload,
        execution_limit=definition.max_executions if definition.is_recurring else 1,
        status=OrderStatus.SCHEDULED,
        schedule_version=1,
        idempotency_key=idempotency_key,
        idempotency_fingerprint=idempotency_fingerprint,
        trace_context=tracing.current_traceparent(),
        # The insert trigger holds the row to the cap (orders/active_counts.py).
        active_cap=settings.ORDER_MAX_ACTIVE_PER_USER,
    )
    # Before the INSERT, so that the one INSERT already carries the job id and next run.
    jobs: list[OccurrenceJob] = []
    schedule_next_occurrence(order, grid_index=1, jobs=jobs)
    _insert_under_cap(order)
    # After the INSERT: outside a transaction the row is committed by now and the job is written at
    # once; inside a caller's, after its commit.
    place_occurrence_jobs([job._replace(order_id=order.pk) for job in jobs])
    log_event(
        "created",
        order_id=order.pk,
        user_id=user.pk,
        job_id=order.job_id,
        status=order.status,
        schedule=order.schedule_description,
    )
    return order


@with_retry
def _insert_under_cap(order: Order) -> None:
    """The create's one statement: the INSERT, refused by its trigger at the cap. Outside a
    transaction it commits by itself (no BEGIN, no COMMIT: three round trips fewer than a
    transaction). Inside a caller's it needs no savepoint: MariaDB's SIGNAL and SQLite's
    RAISE(ABORT) undo the refused statement only, and the caller's work stands (a test holds it)."""
    try:
        sql.insert_order(order)
    except sql.ActiveCapReached:
        _insert_after_recount(order)


@transaction.atomic  # retried, when it must be, by _insert_under_cap's with_retry
def _insert_after_recount(order: Order) -> None:
    """The trigger found the user's counter at the cap. The counter may be above the true number
    (finishing an order does not lower it): recount under the user's row lock and insert after all
    when there is room, so a refusal is always decided on the exact number."""
    assert order.active_cap is not None
    if sql.recount_active_orders_locked(order.user_id)[0] >= order.active_cap:
        raise active_cap_error(order.active_cap)
    try:
        # Under the lock just taken, on the corrected counter: the trigger lets it in.
        sql.insert_order(order)
    except sql.ActiveCapReached:
        # Room under the lock, and still refused: the trigger found no user row. Without a cap the
        # INSERT answers as any insert for a missing user does, with the foreign key's IntegrityError.
        order.active_cap = None
        sql.insert_order(order)


def order_definition_errors(*, changes: dict[str, Any], order: Order | None = None) -> dict[str, list[str]]:
    """The field errors that creating an order (`order` None) or updating `order` with `changes` would
    raise, without saving anything.

    For a request some of whose fields did not even parse: the caller leaves those out of `changes`
    and reports these errors for the other fields in the same answer (a past schedule_time beside a
    malformed interval), instead of one round trip per layer of checks.
    """
    now = timezone.now()
    if order is None:
        definition = OrderDefinition(**{"order_name": "", "schedule_time": None, **changes})
        if isinstance(definition.cron, str):
            definition.cron = normalize_cron(definition.cron)
        schedule_time_changed, executions_count = True, 0
    else:
        current = order_definition(order)
        known = {name: value for name, value in changes.items() if name in OrderDefinition.__dataclass_fields__}
        definition = changed_definition(current, known)
        schedule_time_changed = definition.schedule_time != current.schedule_time
        executions_count = order.executions_count
    try:
        validate_definition(
            definition, now=now, schedule_time_changed=schedule_time_changed, executions_count=executions_count
        )
    except ValidationError as exc:
        return {field: list(messages) for field, messages in exc.message_dict.items()}
    return {}


def changed_definition(current: OrderDefinition, changes: dict[str, Any]) -> OrderDefinition:
    """`current` with `changes` applied, as an update applies them: a cron expression replaces an
    interval and the other way round (sending both at once stays an error), and a one-time order keeps
    none of the recurring fields."""
    new = OrderDefinition(**{**current.__dict__, **changes})
    if isinstance(new.cron, str):
        new.cron = normalize_cron(new.cron)
    sends_cron = changes.get("cron") is not None
    sends_interval = changes.get("repeat_interval") is not None or changes.get("repeat_unit") is not None
    if sends_cron and not sends_interval:
        new.repeat_interval = new.repeat_unit = None
    elif sends_interval and not sends_cron:
        new.cron = None
    if not new.is_recurring:
        new.repeat_interval = new.repeat_unit = new.max_executions = new.cron = new.end_at = None
    return new


def order_definition(order: Order) -> OrderDefinition:
    return OrderDefinition(
        order_name=order.order_name,
        schedule_time=order.schedule_time,
        is_recurring=order.is_recurring,
        repeat_interval=order.repeat_interval,
        repeat_unit=order.repeat_unit,
        max_executions=order.max_executions,
        time_zone=order.time_zone,
        misfire_policy=order.misfire_policy,
        cron=order.cron,
        end_at=order.end_at,
        target_url=order.target_url,
        payload=order.payload,
        pause_after_failures=order.pause_after_failures,
        overlap_policy=order.overlap_policy,
    )


@atomic_with_retry
def order_update(*, order: Order, changes: dict[str, Any]) -> Order:
    """Apply a partial change. Converting is an update of is_recurring (with the fields it needs)."""
    # Before the lock: checking a new target resolves its host name.
    webhook_errors = webhook_field_errors(changes)
    order = lock_order(order)
    now = timezone.now()
    current = order_definition(order)
    allowed = set(OrderDefinition.__dataclass_fields__)
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    new = changed_definition(current, changes)
    converting = new.is_recurring != current.is_recurring
    schedule_time_changed = new.schedule_time != current.schedule_time
    # What moves the grid: for a one-time order only its time (its zone just labels that instant);
    # for a recurring order also its zone (calendar units and cron keep wall time there), its interval
    # and unit or its cron expression, and its end.
    grid_fields = (
        ("schedule_time", "time_zone", "repeat_interval", "repeat_unit", "cron", "end_at")
        if new.is_recurring
        else ("schedule_time",)
    )
    grid_changed = converting or any(getattr(new, f) != getattr(current, f) for f in grid_fields)
    limit_changed = new.is_recurring and new.max_executions != current.max_executions
    schedule_changed = grid_changed or limit_changed
    # A one-time order needs a time still ahead; a recurring order's anchor is usually past.
    needs_new_time = new.schedule_time is None or new.schedule_time <= now
    if converting and not new.is_recurring and not schedule_time_changed and needs_new_time:
        raise ValidationError({"schedule_time": ["Give the time at which the one-time order should run."]})
    with_field_errors(
        webhook_errors,
        validate_definition,
        new,
        now=now,
        schedule_time_changed=schedule_time_changed,
        executions_count=order.executions_count,
    )
    if schedule_changed and order.status in FINISHED_ORDER_STATUSES:
        check_active_cap(order.user, exclude_order_id=order.pk)

    for field_name, value in new.__dict__.items():
        setattr(order, field_name, value)
    if grid_changed:
        if not order.is_recurring:
            # A one-time order runs exactly once more under its new definition.
            order.execution_limit = order.executions_count + 1
        _apply_schedule(order, now=now, restart_grid=schedule_time_changed)
    elif limit_changed:
        _apply_limit(order, now=now)
    order.trace_context = tracing.current_traceparent()  # its runs from now on join this request's trace
    order.save()
    event = "converted" if converting else "updated"
    log_event(
        event,
        order_id=order.pk,
        user_id=order.user_id,
        job_id=order.job_id,
        status=order.status,
        is_recurring=order.is_recurring,
        schedule=order.schedule_description,
    )
    return order


@atomic_with_retry
def order_pause(*, order: Order) -> Order:
    order = lock_order(order)
    if order.status == OrderStatus.PAUSED:
        return order
    if order.status not in ACTIVE_ORDER_STATUSES:
        raise ValidationError({"status": [f"A {order.status} order cannot be paused."]})
    pause_and_cancel_job(order)
    order.save(update_fields=[*POLICY_FIELDS, "updated_at"])
    log_event("paused", order_id=order.pk, user_id=order.user_id, status=order.status)
    return order


@atomic_with_retry
def order_resume(*, order: Order) -> Order:
    order = lock_order(order)
    if order.status != OrderStatus.PAUSED:
        raise ValidationError({"status": ["Only a paused order can be resumed."]})
    check_active_cap(order.user, exclude_order_id=order.pk)
    order.status = OrderStatus.SCHEDULED
    order.schedule_version += 1
    if order.has_runs_left:
        # The grid is unchanged: a slot that fell due while paused is handled by the misfire policy.
        schedule_next_occurrence(order, grid_index=order.next_grid_index)
    else:
        order.next_run_at = None
    for execution in order.executions.filter(status__in=WAITING_EXECUTION_STATUSES):
        schedule_execution_job(execution, due=None)
        execution.save(update_fields=["job_id"])
    settle_status_and_notify(order)
    order.trace_context = tracing.current_traceparent()
    order.save()
    log_event("resumed", order_id=order.pk, user_id=order.user_id, job_id=order.job_id, status=order.status)
    return order


@atomic_with_retry
def order_delete(*, order: Order) -> None:
    order = lock_order(order)
    cancel_job_after_commit(order.job_id)
    for job_id in (
        order.executions.filter(status__in=INFLIGHT_EXECUTION_STATUSES)
        .exclude(job_id="")
        .values_list("job_id", flat=True)
    ):
        cancel_job_after_commit(job_id)
    log_event("deleted", order_id=order.pk, user_id=order.user_id, job_id=order.job_id, status="deleted")
    order.delete()
