"""Idempotency-Key: a client's retry of a create, a run-now or a retry acts once.

The key's digest is written with what the first attempt made (the order, the execution), in the same
transaction, so no outcome is in between: a retry finds it, or finds nothing and acts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC

from django.core.exceptions import ValidationError
from django.db import IntegrityError

from accounts.models import User
from common.errors import IdempotencyConflict
from common.transactions import atomic_with_retry
from orders.events import log_event
from orders.models import Execution, Order, OverlapPolicy
from orders.repair import requeue_execution, reschedule_orders
from orders.services.orders import OrderDefinition, lock_order, order_create
from orders.services.runs import order_retry, order_run_now


class IdempotencyKeyReused(IdempotencyConflict):
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
    # Fields added since: part of it only when set, so that the fingerprints stored before still match.
    if definition.cron is not None:
        data["cron"] = definition.cron
    if definition.end_at is not None:
        data["end_at"] = definition.end_at.astimezone(UTC).isoformat()
    if definition.overlap_policy != OverlapPolicy.WAIT:
        data["overlap_policy"] = definition.overlap_policy
    if definition.pause_after_failures is not None:
        data["pause_after_failures"] = definition.pause_after_failures
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _replayable(user: User, digest: str, fingerprint: str) -> Order | None:
    # A read inside the write it guards, so here rather than in orders.selectors.
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
    # The first attempt's commit may have raised after all, so its after-commit job never
    # ran: repair it now with reconcile's own repair (it re-checks under the lock that the job is
    # missing) rather than wait up to RECONCILE_EVERY_SECONDS.
    if existing.is_active and reschedule_orders([existing.pk]):
        existing.refresh_from_db()
    # Logged because the first attempt's "created" line may be missing: it is written after the
    # commit, and a commit whose acknowledgement was lost raised instead.
    log_event("create_replayed", order_id=existing.pk, user_id=user.pk, job_id=existing.job_id, status=existing.status)
    return existing, True


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
    return _locked_execution_once(order, idempotency_key_digest(idempotency_key), field=field, act=act, event=event)


@atomic_with_retry
def _locked_execution_once(
    order: Order, digest: str, *, field: str, act: Callable[[Order, str], Execution], event: str
) -> tuple[Execution, bool]:
    order = lock_order(order)
    existing = order.executions.filter(**{field: digest}).first()
    if existing is None:
        return act(order, digest), False
    _replay_execution(order, existing, event)
    return existing, True


def _replay_execution(order: Order, execution: Execution, event: str) -> None:
    """The repeat of a run-now or retry that had committed. The caller holds the order's lock. As for
    a replayed create, a job the first attempt's failed commit never made is repaired at once."""
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
