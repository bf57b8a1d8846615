"""Extra executions of an order: run it now, or retry its last failed run."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.utils import timezone

from common import tracing
from common.transactions import atomic_with_retry
from orders.dispatch import cancel_job_after_commit, schedule_execution_job
from orders.events import log_event
from orders.models import FINISHED_ORDER_STATUSES, Execution, ExecutionKind, ExecutionStatus, Order, OrderStatus
from orders.services.orders import check_active_cap, lock_order


@atomic_with_retry
def order_run_now(*, order: Order, idempotency_key: str | None = None) -> Execution:
    """An extra execution now. It counts towards max_executions; the grid is not moved.
    `idempotency_key` is the digest order_run_now_once stores with the execution."""
    order = lock_order(order)
    if order.status == OrderStatus.PAUSED:
        raise ValidationError({"status": ["Resume the order before running it."]})
    if not order.has_runs_left:
        raise ValidationError({"max_executions": ["This order has no executions left."]})
    if order.status in FINISHED_ORDER_STATUSES:
        check_active_cap(order.user, exclude_order_id=order.pk)
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
    schedule_execution_job(execution, due=None)
    execution.save(update_fields=["job_id"])
    if not order.has_runs_left:
        # That was the last allowed execution: the scheduled occurrence must not run as well.
        order.schedule_version += 1
        cancel_job_after_commit(order.job_id)
        order.job_id = ""
        order.next_run_at = None
    if order.status in FINISHED_ORDER_STATUSES:
        order.status = OrderStatus.SCHEDULED
    order.trace_context = tracing.current_traceparent()
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


@atomic_with_retry
def order_retry(*, order: Order, retry_key: str | None = None) -> Execution:
    """Re-run the most recent occurrence that failed for good (one more attempt). `retry_key` is the
    digest order_retry_once stores with the execution."""
    order = lock_order(order)
    if order.status == OrderStatus.PAUSED:
        raise ValidationError({"status": ["Resume the order before retrying it."]})
    execution = order.executions.filter(status=ExecutionStatus.FAILED).order_by("-occurrence").first()
    if execution is None:
        raise ValidationError({"non_field_errors": ["This order has no failed execution to retry."]})
    if order.status in FINISHED_ORDER_STATUSES:
        check_active_cap(order.user, exclude_order_id=order.pk)
    execution.status = ExecutionStatus.RETRYING
    if retry_key is not None:
        execution.retry_key = retry_key
    schedule_execution_job(execution, due=None)
    execution.save(update_fields=["status", "job_id", "retry_key"])
    if order.status in FINISHED_ORDER_STATUSES:
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
