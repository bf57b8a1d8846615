from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from orders.recurrence import Grid, describe


class RepeatUnit(models.TextChoices):
    SECONDS = "seconds"
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"


class OrderStatus(models.TextChoices):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


class MisfirePolicy(models.TextChoices):
    RUN_ONCE = "run_once", "Run once, then back on the grid"
    SKIP = "skip", "Skip missed runs"
    RUN_ALL = "run_all", "Run every missed run"


class OverlapPolicy(models.TextChoices):
    WAIT = "wait", "Wait for the previous run to finish"
    SKIP = "skip", "Skip the run (recorded as skipped)"
    ALLOW = "allow", "Run alongside the previous run"


# An order with a job to wait for: scheduled, or running one of its executions.
ACTIVE_ORDER_STATUSES = (OrderStatus.SCHEDULED, OrderStatus.RUNNING)
# An order that has stopped for good (until an edit, a run-now or a retry brings it back).
FINISHED_ORDER_STATUSES = (OrderStatus.COMPLETED, OrderStatus.FAILED)


class Order(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="orders")
    order_name = models.CharField(max_length=255)
    # The anchor of the grid: occurrence k of the current definition is due at schedule_time + (k-1) x interval,
    # or (a cron order) at the k-th match of `cron` at or after it.
    schedule_time = models.DateTimeField()
    time_zone = models.CharField(max_length=64, default="UTC")
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.SCHEDULED)
    job_id = models.CharField(max_length=64, blank=True, default="")
    is_recurring = models.BooleanField(default=False)
    repeat_interval = models.PositiveIntegerField(null=True, blank=True)
    # NULL (not "") for one-time orders: the original schema and API use null here.
    repeat_unit = models.CharField(max_length=8, choices=RepeatUnit.choices, null=True, blank=True)  # noqa: DJ001
    # A 5-field cron expression in time_zone (a recurring order without an interval); NULL otherwise,
    # as repeat_unit is for an order that has none.
    cron = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    # No occurrence after it (recurring orders); with max_executions, whichever comes first.
    end_at = models.DateTimeField(null=True, blank=True)
    max_executions = models.PositiveIntegerField(null=True, blank=True)
    executions_count = models.PositiveIntegerField(default=0)
    misfire_policy = models.CharField(max_length=8, choices=MisfirePolicy.choices, default=MisfirePolicy.RUN_ONCE)
    # What an occurrence does when it falls due while a run of the same order is still going.
    # db_default too: raw INSERTs that name their columns (bench/floor.py) need not know this one.
    overlap_policy = models.CharField(
        max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.WAIT, db_default=OverlapPolicy.WAIT
    )
    # Pause the order by itself after this many executions in a row failed for good; NULL = never.
    pause_after_failures = models.PositiveIntegerField(null=True, blank=True)
    # The owner's endpoint (docs/WEBHOOKS.md): each execution POSTs a signed message there; "" = none,
    # the execution is simulated as before. Checked by the URL policy at create/update and delivery.
    target_url = models.CharField(max_length=2000, blank=True, default="")
    # A JSON object of at most 16 kB sent as the message's data.payload (orders.webhooks.payload_problem).
    payload = models.JSONField(null=True, blank=True)

    # Engine state (read-only through the API).
    # Bumped by every change of definition or state; a job carrying an older version does nothing.
    schedule_version = models.PositiveIntegerField(default=1)
    # Grid index (1-based, of the current definition) of the next occurrence to be taken.
    next_grid_index = models.PositiveIntegerField(default=1)
    next_run_at = models.DateTimeField(null=True, blank=True)
    # Total executions allowed: max_executions for recurring orders (None = unlimited); for a
    # one-time order, the executions it had before its current definition plus one.
    execution_limit = models.PositiveIntegerField(null=True, blank=True)
    # Sequence of Execution.occurrence numbers handed out so far.
    occurrence_seq = models.PositiveIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_result = models.CharField(max_length=16, blank=True, default="")
    # Executions in a row (in the order they finished) that failed for good; a success resets it.
    consecutive_failures = models.PositiveIntegerField(default=0, db_default=0, editable=False)
    # sha256 (hex) of the client's Idempotency-Key for the create, stored in the create's own
    # transaction: a retry of a create whose answer was lost (a 503 while the commit's acknowledgement
    # was on the wire) finds the order instead of making a second. NULL when none was given: a unique
    # index admits any number of NULLs on MariaDB, MySQL and SQLite, where "" would collide.
    idempotency_key = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    # sha256 of the create's definition as asked for, so that a key reused for another order is refused.
    idempotency_fingerprint = models.CharField(max_length=64, blank=True, default="", editable=False)

    # W3C traceparent of the request that last created or changed the order (common/tracing.py):
    # its executions' spans join that trace. Empty when tracing is off.
    # db_default too: raw INSERTs that name their columns (bench/floor.py) need not know this one.
    trace_context = models.CharField(max_length=128, blank=True, default="", db_default="", editable=False)

    # Not data: the active-order cap a create asks its INSERT to hold (ORDER_MAX_ACTIVE_PER_USER). The
    # insert trigger refuses the row when the user's counter is at it, so a create is one statement
    # (orders/active_counts.py), and then clears it: every stored row has NULL. NULL on an INSERT: no
    # cap asked for (the admin, data loads, a reloaded dump).
    active_cap = models.PositiveIntegerField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["user", "status"]),
            # The order list's ORDER BY (Meta.ordering) in full: with the id in it, a page of a user's
            # newest orders reads its 50 rows off the index instead of sorting all of the user's orders.
            models.Index(fields=["user", "-created_at", "-id"], name="order_user_newest_idx"),
            models.Index(fields=["status", "next_run_at"]),
        ]
        constraints = [
            models.UniqueConstraint(fields=["user", "idempotency_key"], name="order_user_idempotency_key"),
        ]

    def __str__(self) -> str:
        return f"{self.order_name} (#{self.pk})"

    @property
    def order_id(self) -> int:
        return self.pk

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_ORDER_STATUSES

    @property
    def grid(self) -> Grid:
        """The occurrence grid of the current definition (see orders/recurrence.py)."""
        # next_grid_index and next_run_at are written together, from this grid, and next_run_at is
        # cleared whenever the definition changes: a known occurrence to count on from.
        cursor = (self.next_grid_index, self.next_run_at) if self.next_run_at is not None else None
        return Grid.of(
            self.schedule_time,
            self.time_zone,
            is_recurring=self.is_recurring,
            interval=self.repeat_interval,
            unit=self.repeat_unit,
            cron=self.cron,
            end_at=self.end_at,
            cursor=cursor,
        )

    @property
    def schedule_description(self) -> str:
        """The schedule in words: 'At 09:30, Monday through Friday (Europe/Berlin)'."""
        return describe(self.grid)

    @property
    def has_runs_left(self) -> bool:
        """Whether the execution limit leaves room for one more execution."""
        return self.execution_limit is None or self.executions_count < self.execution_limit

    @property
    def executions_remaining(self) -> int | None:
        if self.execution_limit is None:
            return None
        return max(self.execution_limit - self.executions_count, 0)


class ExecutionStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


# An execution that has not finished: waiting for its job (pending, retrying) or running.
INFLIGHT_EXECUTION_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.RETRYING)
# An execution waiting for a job of its own: a manual run, or a retry of a failed attempt.
WAITING_EXECUTION_STATUSES = (ExecutionStatus.PENDING, ExecutionStatus.RETRYING)


class ExecutionKind(models.TextChoices):
    SCHEDULED = "scheduled"
    MANUAL = "manual"


class Execution(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="executions")
    occurrence = models.PositiveIntegerField()
    kind = models.CharField(max_length=12, choices=ExecutionKind.choices, default=ExecutionKind.SCHEDULED)
    schedule_version = models.PositiveIntegerField(default=1)
    grid_index = models.PositiveIntegerField(null=True, blank=True)
    scheduled_for = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=12, choices=ExecutionStatus.choices, default=ExecutionStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    # Why a skipped occurrence did not run (a misfire, or the previous run still going); "" otherwise.
    skip_reason = models.CharField(max_length=200, blank=True, default="", db_default="")
    # One entry per attempt: {"attempt", "began_at", "finished_at", "status", "error"}; a batch companion
    # handed back before its executor began gets a "returned" entry that is not a charged attempt.
    attempt_history = models.JSONField(default=list, blank=True)
    result_ref = models.CharField(max_length=128, blank=True, default="")
    job_id = models.CharField(max_length=64, blank=True, default="")
    # The worker process holding the running attempt (orders.jobqueue.worker_holder): once its
    # heartbeat key is gone the worker died and repair.recover_abandoned takes the attempt back.
    holder = models.CharField(max_length=96, blank=True, default="", db_default="")
    # When the running attempt's executor began; None while a batch companion is taken but not yet
    # begun (such an attempt, if its worker dies, goes back uncharged).
    began_at = models.DateTimeField(null=True, blank=True)
    # The last-resort backstop: a running attempt past its lease is recovered even if its holder
    # still beats (a worker stuck past its job timeout).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    # sha256 (hex) of the client's Idempotency-Key of the run-now that made this (manual) execution;
    # NULL otherwise. See Order.idempotency_key. Not the key an executor receives
    # (ExecutionContext.idempotency_key, derived from the order and occurrence).
    idempotency_key = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001
    # The same for the latest retry of this execution that came with a key.
    retry_key = models.CharField(max_length=64, null=True, blank=True, editable=False)  # noqa: DJ001

    class Meta:
        ordering = ["-occurrence"]
        constraints = [
            models.UniqueConstraint(fields=["order", "occurrence"], name="uniq_execution_order_occurrence"),
            models.UniqueConstraint(fields=["order", "idempotency_key"], name="execution_order_idempotency_key"),
            models.UniqueConstraint(fields=["order", "retry_key"], name="execution_order_retry_key"),
        ]
        indexes = [
            models.Index(fields=["order", "status"]),
            models.Index(fields=["status", "lease_expires_at"]),
        ]

    def __str__(self) -> str:
        return f"order {self.order_id} occurrence {self.occurrence} ({self.status})"

    @property
    def latest_delivery(self) -> dict[str, Any] | None:
        """The record of this execution's most recent webhook delivery (webhooks.delivery's
        DeliveryResult.as_record, kept in its attempt's history entry); None for a simulated run."""
        for entry in reversed(self.attempt_history or []):
            if isinstance(entry, dict) and isinstance(entry.get("delivery"), dict):
                return dict(entry["delivery"])
        return None


class Notification(models.Model):
    class Kind(models.TextChoices):
        COMPLETED = "completed"
        FAILED = "failed"
        PAUSED = "paused"
        RECOVERED = "recovered"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    order = models.ForeignKey(Order, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    message = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"])]

    def __str__(self) -> str:
        return self.message
