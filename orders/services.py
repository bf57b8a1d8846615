"""Every write to orders, shared by the pages, the API, the admin, the jobs and the commands.

Services take keyword arguments, validate, write the database in one transaction, and touch Redis
only after that transaction commits (rq-scheduler ignores transactions). They raise
django.core.exceptions.ValidationError with field errors for bad input.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.transaction import TransactionManagementError
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from orders import scheduling
from orders.events import log_event
from orders.models import (
    Execution,
    ExecutionKind,
    ExecutionStatus,
    MisfirePolicy,
    Order,
    OrderStatus,
    RepeatUnit,
)
from orders.schedule import (
    Grid,
    ScheduleOverflow,
    first_index_due_after,
    interval_seconds,
    is_valid_time_zone,
    occurrence_due,
)

logger = logging.getLogger(__name__)

INFLIGHT = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.RETRYING)


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


def order_grid(order: Order) -> Grid:
    if order.is_recurring:
        return Grid(order.schedule_time, order.time_zone, order.repeat_interval, order.repeat_unit)
    return Grid(order.schedule_time, order.time_zone)


# --- validation -------------------------------------------------------------------------------------


def _validate_definition(
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

    st = definition.schedule_time
    if st is None:
        add("schedule_time", "This field is required.")
    elif schedule_time_changed:
        if st < now - timedelta(seconds=settings.ORDER_PAST_GRACE_SECONDS):
            add("schedule_time", "The time must be in the future.")
        elif st > now + timedelta(days=settings.ORDER_SCHEDULE_HORIZON_DAYS):
            add("schedule_time", f"The time must be within {settings.ORDER_SCHEDULE_HORIZON_DAYS} days.")

    if definition.is_recurring:
        if definition.repeat_interval is None:
            add("repeat_interval", "A recurring order needs an interval.")
        elif definition.repeat_interval < 1:
            add("repeat_interval", "The interval must be at least 1.")
        if definition.repeat_unit is None:
            add("repeat_unit", "A recurring order needs a unit.")
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
        if not errors and definition.repeat_interval and definition.repeat_unit and st is not None:
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
    if errors:
        raise ValidationError(errors)


def _check_active_cap(user: User, *, exclude_order_id: int | None = None) -> None:
    """Called inside the caller's transaction. Locking the user's row makes one user's creates and
    resumes take turns, so parallel requests cannot each see room for one more and all add it.

    Two hand-written statements (the ORM's spelling of the same two costs more CPU to compile than the
    database spends on them, on every create). They stay two: under READ COMMITTED the count must be
    a new statement that starts after the lock is granted, so that it sees what the previous holder
    committed.
    """
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise TransactionManagementError("_check_active_cap must run inside a transaction.")
    quote = connection.ops.quote_name
    lock = " FOR UPDATE" if connection.features.has_select_for_update else ""
    count_sql = (
        f"SELECT COUNT(*) FROM {quote(Order._meta.db_table)} "  # noqa: S608 - identifiers only; values are parameters
        f"WHERE {quote('user_id')} = %s AND {quote('status')} IN (%s, %s)"
    )
    params: list[Any] = [user.pk, OrderStatus.SCHEDULED.value, OrderStatus.RUNNING.value]
    if exclude_order_id is not None:
        count_sql += f" AND {quote('id')} <> %s"
        params.append(exclude_order_id)
    lock_sql = f"SELECT {quote('id')} FROM {quote(User._meta.db_table)} WHERE {quote('id')} = %s{lock}"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(lock_sql, [user.pk])
        cursor.execute(count_sql, params)
        row = cursor.fetchone()
    if row[0] >= settings.ORDER_MAX_ACTIVE_PER_USER:
        raise ValidationError(
            {"non_field_errors": [f"You can have at most {settings.ORDER_MAX_ACTIVE_PER_USER} active orders."]}
        )


# --- scheduling helpers (database side) ------------------------------------------------------------------


def _schedule_next(
    order: Order, *, grid_index: int, now: datetime, placements: list[scheduling.Placement] | None = None
) -> None:
    """Point the order at grid occurrence `grid_index` and place its job after commit.

    The caller holds the row lock and saves the order. A caller taking many orders at once passes
    `placements` and writes them to Redis in one pipeline after commit instead.
    """
    grid = order_grid(order)
    try:
        due = occurrence_due(grid, grid_index)
    except ScheduleOverflow:
        order.next_run_at = None
        order.job_id = ""
        return
    order.next_grid_index = grid_index
    order.next_run_at = due
    job_id = scheduling.new_job_id(order.pk, f"v{order.schedule_version}-k{grid_index}")
    order.job_id = job_id
    order_id, version = order.pk, order.schedule_version
    if placements is not None:
        placements.append(scheduling.Placement(job_id, order_id, version, grid_index, due))
        return
    transaction.on_commit(
        lambda: _safe_redis(
            scheduling.schedule_occurrence,
            job_id=job_id,
            order_id=order_id,
            version=version,
            grid_index=grid_index,
            due=due,
        )
    )


def _cancel_after_commit(job_id: str) -> None:
    if job_id:
        transaction.on_commit(lambda: _safe_redis(scheduling.cancel, job_id))


def _safe_redis(func: Any, *args: Any, **kwargs: Any) -> None:
    """Redis writes happen after commit; if Redis is down the database still holds the truth and
    reconcile (run by the scheduler every minute) places the job once Redis is back."""
    try:
        func(*args, **kwargs)
    except Exception:
        logger.warning("Redis write failed; reconcile will repair it", exc_info=True)


def _has_remaining(order: Order) -> bool:
    return order.execution_limit is None or order.executions_count < order.execution_limit


def _apply_limit(order: Order, *, now: datetime) -> None:
    """A new max_executions on an unchanged grid: the pending occurrence keeps its slot and its job."""
    order.execution_limit = order.max_executions
    if not _has_remaining(order):
        order.schedule_version += 1
        _cancel_after_commit(order.job_id)
        order.job_id = ""
        order.next_run_at = None
        settle_status(order)
    elif order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        # Raised above what it already ran: carry on from the slot where it stopped.
        order.schedule_version += 1
        order.status = OrderStatus.SCHEDULED
        _schedule_next(order, grid_index=order.next_grid_index, now=now)


def _apply_schedule(order: Order, *, now: datetime, restart_grid: bool) -> None:
    """(Re)compute the engine state after a definition change and schedule the next occurrence."""
    order.schedule_version += 1
    _cancel_after_commit(order.job_id)
    order.job_id = ""
    order.next_run_at = None
    if order.is_recurring:
        order.execution_limit = order.max_executions
    # A new anchor starts the grid again; the same anchor with a new interval or unit continues
    # from the first slot still ahead.
    restart = restart_grid or not order.is_recurring
    grid_index = 1 if restart else first_index_due_after(order_grid(order), now)
    if order.status == OrderStatus.PAUSED:
        order.next_grid_index = grid_index
        return
    if _has_remaining(order):
        _schedule_next(order, grid_index=grid_index, now=now)
        if order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
            order.status = OrderStatus.SCHEDULED
    else:
        order.next_grid_index = grid_index
        settle_status(order)


# --- user-facing operations -----------------------------------------------------------------------


def _lock(order: Order) -> Order:
    """Re-read the order under a row lock. It may have been deleted since the caller read it: that is
    a plain not-found for the caller, never a crash."""
    locked = Order.objects.select_for_update().filter(pk=order.pk).first()
    if locked is None:
        raise Http404("Not found.")
    return locked


class IdempotencyKeyReused(Exception):
    """The Idempotency-Key already created an order from a different definition."""

    def __init__(self, order: Order) -> None:
        super().__init__(f"This Idempotency-Key already created order {order.pk} from a different definition.")
        self.order = order


# The fields a key's fingerprint covers, named rather than taken from the dataclass: a field added
# later must not change the fingerprints already stored (a retry spanning a deploy would be a 422).
FINGERPRINT_FIELDS = (
    "order_name",
    "schedule_time",
    "is_recurring",
    "repeat_interval",
    "repeat_unit",
    "max_executions",
    "time_zone",
    "misfire_policy",
)


def idempotency_key_digest(key: str) -> str:
    """What is stored for a client's key: hex is immune to the case-insensitive collation MariaDB
    compares strings with (abc and ABC are two keys) and has a fixed length whatever the key's."""
    return hashlib.sha256(key.encode()).hexdigest()


def _fingerprint(definition: OrderDefinition) -> str:
    """The definition as asked for, before the create fills in "now" for a recurring order without
    a start (so a retry a moment later matches). The caller's own defaults (the API's time zone from
    the user's profile) are part of it."""
    data = {name: getattr(definition, name) for name in FINGERPRINT_FIELDS}
    if data["schedule_time"] is not None:
        data["schedule_time"] = data["schedule_time"].astimezone(UTC).isoformat()
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _replayable(user: User, digest: str, fingerprint: str) -> Order | None:
    # A read inside the write it guards (orders.selectors imports this module, so not from there).
    order = Order.objects.filter(user=user, idempotency_key=digest).first()
    if order is not None and order.idempotency_fingerprint != fingerprint:
        raise IdempotencyKeyReused(order)
    return order


def order_create_once(*, user: User, definition: OrderDefinition, idempotency_key: str | None) -> tuple[Order, bool]:
    """order_create for a client that may be retrying: returns (order, replayed).

    The key is written with the order, in the same transaction, so no outcome is in between: either
    the first attempt committed and a retry finds its order (replayed=True), or it did not and the
    retry creates it. Attempts racing with one key take turns on the user's row lock (the active
    cap) and meet at the unique index; the loser reads the winner's order. Without a key, a plain
    create.

    The look-up after a lost race must see the winner's commit: it does as a statement of its own
    under READ COMMITTED, the isolation level settings.py sets for MariaDB (under REPEATABLE READ
    inside a caller's transaction it would read that transaction's older snapshot).
    """
    if idempotency_key is None:
        return order_create(user=user, definition=definition), False
    digest = idempotency_key_digest(idempotency_key)
    fingerprint = _fingerprint(definition)
    existing = _replayable(user, digest, fingerprint)
    if existing is None:
        try:
            order = order_create(
                user=user, definition=definition, idempotency_key=digest, idempotency_fingerprint=fingerprint
            )
        except (IntegrityError, ValidationError):
            # Lost a race: the unique index refused the row, or the winner's order filled the last
            # place under the active cap. Either way the winner's order is the answer.
            existing = _replayable(user, digest, fingerprint)
            if existing is None:
                raise
        else:
            return order, False
    if existing.is_active:
        # The first attempt's commit may have raised after all, so its after-commit placement never
        # ran: repair it now with reconcile's own repair (it re-checks under the lock that the job is
        # missing) rather than wait up to RECONCILE_EVERY_SECONDS. Imported here: engine imports this.
        from orders.engine import reschedule_orders

        if reschedule_orders([existing.pk]):
            existing.refresh_from_db()
    # Logged because the first attempt's "created" line may be missing: it is written after the
    # commit, and a commit whose acknowledgement was lost raised instead.
    log_event("create_replayed", order_id=existing.pk, user_id=user.pk, job_id=existing.job_id, status=existing.status)
    return existing, True


@transaction.atomic
def order_create(
    *,
    user: User,
    definition: OrderDefinition,
    idempotency_key: str | None = None,
    idempotency_fingerprint: str = "",
) -> Order:
    now = timezone.now()
    if definition.schedule_time is None and definition.is_recurring:
        definition.schedule_time = now
    _validate_definition(definition, now=now, schedule_time_changed=True)
    assert definition.schedule_time is not None  # validated above
    _check_active_cap(user)
    order = Order(
        user=user,
        order_name=definition.order_name,
        schedule_time=definition.schedule_time,
        time_zone=definition.time_zone,
        is_recurring=definition.is_recurring,
        repeat_interval=definition.repeat_interval if definition.is_recurring else None,
        repeat_unit=definition.repeat_unit if definition.is_recurring else None,
        max_executions=definition.max_executions if definition.is_recurring else None,
        misfire_policy=definition.misfire_policy,
        execution_limit=definition.max_executions if definition.is_recurring else 1,
        status=OrderStatus.SCHEDULED,
        schedule_version=1,
        idempotency_key=idempotency_key,
        idempotency_fingerprint=idempotency_fingerprint,
    )
    order.save()
    _schedule_next(order, grid_index=1, now=now)
    order.save(update_fields=["next_grid_index", "next_run_at", "job_id"])
    log_event("created", order_id=order.pk, user_id=user.pk, job_id=order.job_id, status=order.status)
    return order


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
        schedule_time_changed, executions_count = True, 0
    else:
        current = order_definition(order)
        known = {name: value for name, value in changes.items() if name in OrderDefinition.__dataclass_fields__}
        definition = OrderDefinition(**{**current.__dict__, **known})
        if not definition.is_recurring:
            definition.repeat_interval = definition.repeat_unit = definition.max_executions = None
        schedule_time_changed = definition.schedule_time != current.schedule_time
        executions_count = order.executions_count
    try:
        _validate_definition(
            definition, now=now, schedule_time_changed=schedule_time_changed, executions_count=executions_count
        )
    except ValidationError as exc:
        return {field: list(messages) for field, messages in exc.message_dict.items()}
    return {}


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
    )


@transaction.atomic
def order_update(*, order: Order, changes: dict[str, Any]) -> Order:
    """Apply a partial change. Converting is an update of is_recurring (with the fields it needs)."""
    order = _lock(order)
    now = timezone.now()
    current = order_definition(order)
    allowed = set(OrderDefinition.__dataclass_fields__)
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError({name: ["This field cannot be changed."] for name in sorted(unknown)})
    new = OrderDefinition(**{**current.__dict__, **changes})
    converting = new.is_recurring != current.is_recurring
    if not new.is_recurring:
        new.repeat_interval = new.repeat_unit = new.max_executions = None
    schedule_time_changed = new.schedule_time != current.schedule_time
    # What moves the grid: for a one-time order only its time (its zone just labels that instant);
    # for a recurring order also its zone (calendar units keep wall time there), interval and unit.
    grid_fields = (
        ("schedule_time", "time_zone", "repeat_interval", "repeat_unit") if new.is_recurring else ("schedule_time",)
    )
    grid_changed = converting or any(getattr(new, f) != getattr(current, f) for f in grid_fields)
    limit_changed = new.is_recurring and new.max_executions != current.max_executions
    schedule_changed = grid_changed or limit_changed
    # A one-time order needs a time still ahead; a recurring order's anchor is usually past.
    needs_new_time = new.schedule_time is None or new.schedule_time <= now
    if converting and not new.is_recurring and not schedule_time_changed and needs_new_time:
        raise ValidationError({"schedule_time": ["Give the time at which the one-time order should run."]})
    _validate_definition(
        new, now=now, schedule_time_changed=schedule_time_changed, executions_count=order.executions_count
    )
    if schedule_changed and order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        _check_active_cap(order.user, exclude_order_id=order.pk)

    for field_name, value in new.__dict__.items():
        setattr(order, field_name, value)
    if grid_changed:
        if not order.is_recurring:
            # A one-time order runs exactly once more under its new definition.
            order.execution_limit = order.executions_count + 1
        _apply_schedule(order, now=now, restart_grid=schedule_time_changed or converting)
    elif limit_changed:
        _apply_limit(order, now=now)
    order.save()
    event = "converted" if converting else "updated"
    log_event(
        event,
        order_id=order.pk,
        user_id=order.user_id,
        job_id=order.job_id,
        status=order.status,
        is_recurring=order.is_recurring,
    )
    return order


@transaction.atomic
def order_pause(*, order: Order) -> Order:
    order = _lock(order)
    if order.status == OrderStatus.PAUSED:
        return order
    if order.status not in (OrderStatus.SCHEDULED, OrderStatus.RUNNING):
        raise ValidationError({"status": [f"A {order.status} order cannot be paused."]})
    order.schedule_version += 1
    _cancel_after_commit(order.job_id)
    order.job_id = ""
    order.status = OrderStatus.PAUSED
    order.save(update_fields=["schedule_version", "job_id", "status", "updated_at"])
    log_event("paused", order_id=order.pk, user_id=order.user_id, status=order.status)
    return order


@transaction.atomic
def order_resume(*, order: Order) -> Order:
    order = _lock(order)
    if order.status != OrderStatus.PAUSED:
        raise ValidationError({"status": ["Only a paused order can be resumed."]})
    _check_active_cap(order.user, exclude_order_id=order.pk)
    now = timezone.now()
    order.status = OrderStatus.SCHEDULED
    order.schedule_version += 1
    if _has_remaining(order):
        # The grid is unchanged: a slot that fell due while paused is handled by the misfire policy.
        _schedule_next(order, grid_index=order.next_grid_index, now=now)
    else:
        order.next_run_at = None
    for execution in order.executions.filter(status__in=(ExecutionStatus.PENDING, ExecutionStatus.RETRYING)):
        _schedule_execution_job(execution, due=None)
        execution.save(update_fields=["job_id"])
    settle_status(order)
    order.save()
    log_event("resumed", order_id=order.pk, user_id=order.user_id, job_id=order.job_id, status=order.status)
    return order


@transaction.atomic
def order_delete(*, order: Order) -> None:
    order = _lock(order)
    _cancel_after_commit(order.job_id)
    for job_id in order.executions.filter(status__in=INFLIGHT).exclude(job_id="").values_list("job_id", flat=True):
        _cancel_after_commit(job_id)
    log_event("deleted", order_id=order.pk, user_id=order.user_id, job_id=order.job_id, status="deleted")
    order.delete()


def order_run_now_once(*, order: Order, idempotency_key: str | None) -> tuple[Execution, bool]:
    """order_run_now for a client that may be retrying: returns (execution, replayed).

    The key is stored on the execution it made, in the same transaction. Without a key, a plain
    run-now.
    """
    if idempotency_key is None:
        return order_run_now(order=order), False
    return _execution_once(
        order,
        idempotency_key,
        field="idempotency_key",
        act=lambda locked, digest: order_run_now(order=locked, idempotency_key=digest),
        event="run_now_replayed",
    )


def order_retry_once(*, order: Order, idempotency_key: str | None) -> tuple[Execution, bool]:
    """order_retry for a client that may be retrying, as order_run_now_once: a repeat answers with
    the execution the first attempt retried instead of retrying the next failed one."""
    if idempotency_key is None:
        return order_retry(order=order), False
    return _execution_once(
        order,
        idempotency_key,
        field="retry_key",
        act=lambda locked, digest: order_retry(order=locked, retry_key=digest),
        event="retry_replayed",
    )


def _execution_once(
    order: Order, idempotency_key: str, *, field: str, act: Callable[[Order, str], Execution], event: str
) -> tuple[Execution, bool]:
    """Attempts with one key take turns on the order's row lock, and each looks for the key only
    once it holds the lock, so a repeat finds what the first attempt committed (READ COMMITTED: a
    new statement sees it)."""
    digest = idempotency_key_digest(idempotency_key)
    with transaction.atomic():
        order = _lock(order)
        existing = order.executions.filter(**{field: digest}).first()
        if existing is None:
            return act(order, digest), False
        _replay_execution(order, existing, event)
    return existing, True


def _replay_execution(order: Order, execution: Execution, event: str) -> None:
    """The repeat of a run-now or retry that had committed. The caller holds the order's lock. As for
    a replayed create, a placement the first attempt's failed commit never made is repaired at once."""
    from orders.engine import requeue_execution  # engine imports this module

    requeue_execution(execution.pk)
    execution.refresh_from_db(fields=["job_id"])
    log_event(
        event,
        order_id=order.pk,
        user_id=order.user_id,
        job_id=execution.job_id,
        occurrence=execution.occurrence,
        status=order.status,
    )


@transaction.atomic
def order_run_now(*, order: Order, idempotency_key: str | None = None) -> Execution:
    """An extra execution now. It counts towards max_executions; the grid is not moved.
    `idempotency_key` is the digest order_run_now_once stores with the execution."""
    order = _lock(order)
    if order.status == OrderStatus.PAUSED:
        raise ValidationError({"status": ["Resume the order before running it."]})
    if not _has_remaining(order):
        raise ValidationError({"max_executions": ["This order has no executions left."]})
    if order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        _check_active_cap(order.user, exclude_order_id=order.pk)
    now = timezone.now()
    order.occurrence_seq += 1
    order.executions_count += 1
    execution = Execution.objects.create(
        order=order,
        occurrence=order.occurrence_seq,
        kind=ExecutionKind.MANUAL,
        schedule_version=order.schedule_version,
        scheduled_for=now,
        status=ExecutionStatus.PENDING,
        idempotency_key=idempotency_key,
    )
    _schedule_execution_job(execution, due=None)
    execution.save(update_fields=["job_id"])
    if not _has_remaining(order):
        # That was the last allowed execution: the scheduled occurrence must not run as well.
        order.schedule_version += 1
        _cancel_after_commit(order.job_id)
        order.job_id = ""
        order.next_run_at = None
    if order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        order.status = OrderStatus.SCHEDULED
    order.save()
    log_event(
        "run_now",
        order_id=order.pk,
        user_id=order.user_id,
        job_id=execution.job_id,
        occurrence=execution.occurrence,
        status=order.status,
    )
    return execution


@transaction.atomic
def order_retry(*, order: Order, retry_key: str | None = None) -> Execution:
    """Re-run the most recent occurrence that failed for good (one more attempt). `retry_key` is the
    digest order_retry_once stores with the execution."""
    order = _lock(order)
    if order.status == OrderStatus.PAUSED:
        raise ValidationError({"status": ["Resume the order before retrying it."]})
    execution = order.executions.filter(status=ExecutionStatus.FAILED).order_by("-occurrence").first()
    if execution is None:
        raise ValidationError({"non_field_errors": ["This order has no failed execution to retry."]})
    if order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        _check_active_cap(order.user, exclude_order_id=order.pk)
    execution.status = ExecutionStatus.RETRYING
    if retry_key is not None:
        execution.retry_key = retry_key
    _schedule_execution_job(execution, due=None)
    execution.save(update_fields=["status", "job_id", "retry_key"])
    if order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED):
        order.status = OrderStatus.SCHEDULED
        order.save(update_fields=["status", "updated_at"])
    log_event(
        "retried",
        order_id=order.pk,
        user_id=order.user_id,
        job_id=execution.job_id,
        occurrence=execution.occurrence,
        attempt=execution.attempts + 1,
        status=execution.status,
    )
    return execution


def _schedule_execution_job(execution: Execution, *, due: datetime | None) -> None:
    attempt = execution.attempts + 1
    job_id = scheduling.new_job_id(execution.order_id, f"x{execution.occurrence}-a{attempt}")
    execution.job_id = job_id
    execution_id = execution.pk
    transaction.on_commit(
        lambda: _safe_redis(
            scheduling.schedule_execution, job_id=job_id, execution_id=execution_id, attempt=attempt, due=due
        )
    )


def settle_status(order: Order, *, inflight: set[str] | None = None, notices: list[Any] | None = None) -> None:
    """Derive the order's status from its executions and schedule (caller holds the lock and saves).

    A caller settling many orders at once passes each order's in-flight execution statuses (read in
    one query) and a `notices` list that it delivers in bulk."""
    if order.status == OrderStatus.PAUSED:
        return
    if inflight is None:
        inflight = set(order.executions.filter(status__in=INFLIGHT).values_list("status", flat=True))
    statuses = inflight
    previous = order.status
    if ExecutionStatus.RUNNING in statuses:
        order.status = OrderStatus.RUNNING
    elif statuses or (order.next_run_at is not None and order.job_id):
        order.status = OrderStatus.SCHEDULED
    else:
        order.status = OrderStatus.FAILED if order.last_result == ExecutionStatus.FAILED else OrderStatus.COMPLETED
        order.next_run_at = None
        if previous != order.status:
            from orders.notifications import notify_order_finished

            notify_order_finished(order, notices=notices)


@transaction.atomic
def notification_mark_read(*, notification: Any) -> None:
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])


def notification_mark_all_read(*, user: User) -> int:
    """Mark every unread notification of the user as read; returns how many there were."""
    return user.notifications.filter(read_at__isnull=True).update(read_at=timezone.now())
