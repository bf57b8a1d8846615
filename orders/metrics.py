"""The scheduler's Prometheus metrics: counted in every process, kept in Redis, read at scrape time.

The system is many processes (web server workers, several RQ workers, one or more schedulers), each
restarted at will, possibly on different hosts. A counter kept in one process's memory would be
reset by every restart and seen only by a scrape of that process; prometheus-client's multiprocess
mode needs one shared directory on one host. So:

- Counters and histograms (executions by outcome, start lateness, repairs, HTTP requests) are added
  to a small in-process buffer and written to one Redis hash (HINCRBYFLOAT, one pipeline) by a
  background thread every METRICS_FLUSH_SECONDS (1 s), after a repair pass, at exit, and at the end of each RQ
  job run in a forked work horse (which ends with os._exit).
  The totals in Redis are shared by all processes and survive their restarts; recording costs a
  few dict updates, never a round trip on the request or execution path. A process killed with
  SIGKILL loses at most its last METRICS_FLUSH_SECONDS of counts; a flush that fails (Redis down) keeps the
  counts in the buffer for the next one. `conn.flushdb()` (a Redis loss) resets them, which
  Prometheus reads as a counter reset.
- Engine counts are added only when the database transaction that recorded the outcome commits
  (transaction.on_commit), so a rolled-back finish is never counted.
- Gauges (backlog, oldest due age, orders by status, live workers, heartbeat age, queue depth) are
  computed at scrape time from the database and Redis, the source of truth, so any web process
  answers the same.

Histograms are stored per bucket (not cumulative) and summed up at scrape time. Set
METRICS_ENABLED=false to record nothing (the benchmark's "off" side).
"""

from __future__ import annotations

import atexit
import bisect
import functools
import json
import logging
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orders import jobqueue
from orders.models import ACTIVE_ORDER_STATUSES, Execution, ExecutionStatus, Order, OrderStatus

logger = logging.getLogger(__name__)

REDIS_KEY = "metrics:v1"


@dataclass(frozen=True, eq=False)  # hashed by identity: a cache key on every count
class Definition:
    name: str  # a counter's name without its _total suffix (prometheus-client adds it)
    kind: str  # "counter" or "histogram"
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

EXECUTIONS = Definition(
    "scheduler_executions",
    "counter",
    "Outcomes of executions: succeeded and failed (for good) executions, retried attempts, skipped occurrences.",
    ("status",),
)
LATENESS = Definition(
    "scheduler_start_lateness_seconds",
    "histogram",
    "Seconds from an execution's due time to its executor's start (first attempts).",
    buckets=LATENESS_BUCKETS,
)
REPAIRS = Definition(
    "scheduler_reconcile_repairs",
    "counter",
    "Repairs made by reconcile: missing occurrence jobs placed, waiting runs re-queued, orphan jobs removed.",
    ("kind",),
)
RECOVERED = Definition(
    "scheduler_recovered_runs",
    "counter",
    "Running attempts whose worker died (lease passed), recorded as failed attempts and retried.",
)
HTTP_REQUESTS = Definition(
    "scheduler_http_requests",
    "counter",
    "HTTP requests answered, by route, method and status code.",
    ("view", "method", "status"),
)
HTTP_DURATION = Definition(
    "scheduler_http_request_duration_seconds",
    "histogram",
    "Time to answer an HTTP request, by route.",
    ("view", "method"),
    HTTP_BUCKETS,
)
# For the webhooks app: record_webhook_delivery() is its hook point.
WEBHOOK_DELIVERIES = Definition(
    "scheduler_webhook_deliveries",
    "counter",
    "Webhook delivery attempts by outcome.",
    ("status",),
)
WEBHOOK_DURATION = Definition(
    "scheduler_webhook_delivery_duration_seconds",
    "histogram",
    "Time of one webhook delivery attempt.",
    buckets=HTTP_BUCKETS,
)
DEFINITIONS = {d.name: d for d in (EXECUTIONS, LATENESS, REPAIRS, RECOVERED, HTTP_REQUESTS, HTTP_DURATION,
                                   WEBHOOK_DELIVERIES, WEBHOOK_DURATION)}  # fmt: skip


# --- recording --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8192)
def _field(definition: Definition, labels: tuple[str, ...], part: str = "") -> str:
    # name|["label values"]|part, where part is "" (a counter), "sum", "count" or a bucket index.
    # Cached: the label sets are few (bounded by design) and every count names one.
    return f"{definition.name}|{json.dumps(list(labels))}|{part}"


class _Buffer:
    """Deltas not yet written to Redis, shared by the process's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.deltas: defaultdict[str, float] = defaultdict(float)

    def add(self, deltas: dict[str, float]) -> None:
        with self.lock:
            for field, value in deltas.items():
                self.deltas[field] += value

    def drain(self) -> dict[str, float]:
        with self.lock:
            drained = dict(self.deltas)
            self.deltas.clear()
        return drained


_buffer = _Buffer()
_flusher_pid: int | None = None
_flusher_lock = threading.Lock()


def enabled() -> bool:
    return bool(settings.METRICS_ENABLED)


def _histogram_deltas(definition: Definition, labels: tuple[str, ...], value: float) -> dict[str, float]:
    index = bisect.bisect_left(definition.buckets, value)  # the first bucket with value <= le
    return {
        _field(definition, labels, str(index)): 1,
        _field(definition, labels, "sum"): value,
        _field(definition, labels, "count"): 1,
    }


def _record(deltas: dict[str, float]) -> None:
    _buffer.add(deltas)
    _ensure_flusher()


def _record_after_commit(deltas: dict[str, float]) -> None:
    transaction.on_commit(lambda: _record(deltas))


def count_attempt(*, status: str, first_attempt_lateness: float | None) -> None:
    """An attempt's outcome was recorded (counted when its transaction commits): status is
    "succeeded", "failed" (for good) or "retried"; the lateness is given for first attempts."""
    if not enabled():
        return
    deltas: dict[str, float] = {_field(EXECUTIONS, (status,)): 1}
    if first_attempt_lateness is not None:
        deltas.update(_histogram_deltas(LATENESS, (), max(first_attempt_lateness, 0.0)))
    _record_after_commit(deltas)


def count_skipped(count: int) -> None:
    if enabled() and count > 0:
        _record_after_commit({_field(EXECUTIONS, ("skipped",)): count})


def count_repairs(*, scheduled: int, requeued: int, orphans: int) -> None:
    """One reconcile pass's repairs (written at once: a pass is rare and may be a short-lived command)."""
    if not enabled():
        return
    deltas: dict[str, float] = {
        _field(REPAIRS, ("scheduled",)): scheduled,
        _field(REPAIRS, ("requeued",)): requeued,
        _field(REPAIRS, ("orphan_removed",)): orphans,
    }
    _record(deltas)
    flush()


def count_recovered(count: int) -> None:
    if not enabled():
        return
    # Written even when zero so that the series exists from the first pass on.
    _record({_field(RECOVERED, ()): count})
    flush()


def observe_http_request(*, view: str, method: str, status: int, seconds: float) -> None:
    if not enabled():
        return
    deltas: dict[str, float] = {_field(HTTP_REQUESTS, (view, method, str(status))): 1}
    deltas.update(_histogram_deltas(HTTP_DURATION, (view, method), seconds))
    _record(deltas)


def record_webhook_delivery(*, status: str, seconds: float) -> None:
    """The webhooks app's hook: one delivery attempt, its outcome ("delivered", "failed", ...) and time."""
    if not enabled():
        return
    deltas: dict[str, float] = {_field(WEBHOOK_DELIVERIES, (status,)): 1}
    deltas.update(_histogram_deltas(WEBHOOK_DURATION, (), seconds))
    _record(deltas)


def flush() -> None:
    """Write this process's buffered counts to Redis (kept for the next flush if Redis fails)."""
    deltas = _buffer.drain()
    if not deltas:
        return
    try:
        pipe = jobqueue.connection().pipeline(transaction=False)
        for field, value in deltas.items():
            pipe.hincrbyfloat(REDIS_KEY, field, value)
        pipe.execute()
    except Exception:
        _buffer.add(deltas)
        logger.debug("could not write metrics to Redis; kept for the next flush", exc_info=True)


def flush_if_forked() -> None:
    """At the end of an RQ job: a forking worker's work horse ends with os._exit (no atexit, no
    flusher thread left), so its counts are written now; elsewhere the flusher thread does it."""
    if _forked:
        flush()


def _mark_forked() -> None:
    global _forked
    _forked = True


_forked = False
os.register_at_fork(after_in_child=_mark_forked)


def discard_pending() -> None:
    """Forget this process's unwritten counts (tests, after flushing Redis)."""
    _buffer.drain()


def _flush_loop() -> None:
    while True:
        time.sleep(settings.METRICS_FLUSH_SECONDS)
        flush()


def _ensure_flusher() -> None:
    """One background flusher per process, started at the first count (after a fork, again)."""
    global _flusher_pid
    if _flusher_pid == os.getpid():
        return
    with _flusher_lock:
        if _flusher_pid != os.getpid():
            _flusher_pid = os.getpid()
            threading.Thread(target=_flush_loop, name="metrics-flush", daemon=True).start()


atexit.register(flush)


# --- reading (at scrape time) -----------------------------------------------------------------------


def _stored() -> dict[str, float]:
    raw: dict[bytes, bytes] = jobqueue.connection().hgetall(REDIS_KEY)  # type: ignore[assignment]
    return {k.decode(): float(v) for k, v in raw.items()}


def stored_families(values: dict[str, float]) -> Iterator[Metric]:
    """The counters and histograms in Redis as Prometheus metric families."""
    series: dict[str, dict[tuple[str, ...], dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for field, value in values.items():
        name, rest = field.split("|", 1)
        labels_json, part = rest.rsplit("|", 1)
        if name in DEFINITIONS:
            series[name][tuple(json.loads(labels_json))][part] = value
    for definition in DEFINITIONS.values():
        by_labels = series.get(definition.name, {})
        if definition.kind == "counter":
            counter = CounterMetricFamily(definition.name, definition.help, labels=definition.labels)
            for labels, parts in sorted(by_labels.items()):
                counter.add_metric(list(labels), parts.get("", 0.0))
            yield counter
            continue
        histogram = HistogramMetricFamily(definition.name, definition.help, labels=definition.labels)
        for labels, parts in sorted(by_labels.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for i, le in enumerate((*definition.buckets, math.inf)):
                cumulative += parts.get(str(i), 0.0)
                buckets.append(("+Inf" if le == math.inf else repr(le), cumulative))
            histogram.add_metric(list(labels), buckets, parts.get("sum", 0.0))
        yield histogram


def _age(now: datetime, *times: datetime | None) -> float:
    known = [t for t in times if t is not None]
    return max((now - min(known)).total_seconds(), 0.0) if known else 0.0


def database_families(now: datetime | None = None) -> Iterator[Metric]:
    """Gauges read from the database: orders by status, the due backlog and its oldest entry."""
    now = now or timezone.now()
    by_status = dict(Order.objects.order_by().values_list("status").annotate(n=Count("id")))
    orders = GaugeMetricFamily("scheduler_orders", "Orders by status.", labels=["status"])
    for status in OrderStatus.values:
        orders.add_metric([status], by_status.get(status, 0))
    yield orders
    yield GaugeMetricFamily(
        "scheduler_scheduled_orders",
        "Orders the scheduler is responsible for (status scheduled or running).",
        value=sum(by_status.get(s, 0) for s in ACTIVE_ORDER_STATUSES),
    )
    due = Order.objects.filter(status__in=ACTIVE_ORDER_STATUSES, next_run_at__lte=now).aggregate(
        n=Count("id"), oldest=Min("next_run_at")
    )
    pending = Execution.objects.filter(
        status=ExecutionStatus.PENDING, order__status__in=ACTIVE_ORDER_STATUSES
    ).aggregate(n=Count("id"), oldest=Min("scheduled_for"))
    yield GaugeMetricFamily(
        "scheduler_due_backlog",
        "Occurrences due and not yet begun, plus manual or handed-back runs waiting for a worker.",
        value=due["n"] + pending["n"],
    )
    yield GaugeMetricFamily(
        "scheduler_oldest_due_age_seconds",
        "Seconds since the oldest entry of the due backlog fell due (0 when the backlog is empty).",
        value=_age(now, due["oldest"], pending["oldest"]),
    )


def redis_families() -> Iterator[Metric]:
    """Gauges read from Redis: the scheduler's heartbeat, live workers, jobs queued and scheduled."""
    beat = jobqueue.read_heartbeat()
    yield GaugeMetricFamily(
        "scheduler_heartbeat_age_seconds",
        "Seconds since a scheduler process last polled (+Inf when none has for two minutes).",
        value=math.inf if beat is None else max(time.time() - beat, 0.0),
    )
    yield GaugeMetricFamily(
        "scheduler_workers_alive", "RQ workers registered and not suspended.", value=jobqueue.live_worker_count()
    )
    yield GaugeMetricFamily(
        "scheduler_queued_jobs", "Jobs in the orders queue waiting for a worker.", value=jobqueue.queued_count()
    )
    yield GaugeMetricFamily(
        "scheduler_redis_scheduled_jobs",
        "Jobs in rq-scheduler's schedule (future occurrences and retries).",
        value=jobqueue.scheduled_count(),
    )


class SchedulerCollector(Collector):
    """Everything above, for a scrape. A dependency that fails shows as scheduler_metrics_source_up 0
    (and its series are missing) instead of failing the whole scrape."""

    def collect(self) -> Iterable[Metric]:
        flush()  # this process's own recent counts
        up = GaugeMetricFamily(
            "scheduler_metrics_source_up",
            "Whether the scrape could read this source (1) or not (0).",
            labels=["source"],
        )
        families: list[Metric] = []
        for source, read in (
            ("redis_counters", lambda: list(stored_families(_stored()))),
            ("database", lambda: list(database_families())),
            ("redis", lambda: list(redis_families())),
        ):
            try:
                families.extend(read())
                up.add_metric([source], 1)
            except Exception:
                logger.warning("metrics source %s failed", source, exc_info=True)
                up.add_metric([source], 0)
        yield from families
        yield up
