"""The invariants every fault scenario must leave intact, checked from the database, Redis, the
order log (LOG_DIR/orders.log) and the executor's evidence (LOG_DIR/effects.log).

check_invariants() returns a list of readable problems (empty when all hold); LimitSampler checks
the invariants that must hold at every instant, not only at the end, from a background thread.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection as db_connection
from django.db.models import Count, F
from rq.registry import StartedJobRegistry

from orders import jobqueue
from orders.models import Execution, ExecutionKind, ExecutionStatus, Order, OrderStatus
from tests.faults.executors import effects_path

# A "started" line is written just after the commit that took the occurrence, or for a batch
# companion just after a read that checks its order is unchanged; a DELETE that waited for the row
# lock can return a moment before the line is written. Anything later is a real defect.
DELETE_TOLERANCE_SECONDS = 0.25
ACTIVE = (OrderStatus.SCHEDULED, OrderStatus.RUNNING)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    text = path.read_text()
    # Read while processes still append: a last line without its newline is still being written.
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def order_log() -> list[dict[str, Any]]:
    return read_jsonl(Path(settings.ORDER_LOG_FILE))


def effects() -> list[dict[str, Any]]:
    return read_jsonl(effects_path())


def _log_time(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(entry["ts"].replace("Z", "+00:00")).timestamp()


class LimitSampler:
    """Samples, every `interval` seconds, what must never be true even for an instant:
    an order counted past its limit, or two attempts of one order running at once."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.samples = 0
        self.violations: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LimitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self.sample()
                except Exception as exc:
                    # A sampler that stops sampling must fail the scenario, not pass it silently.
                    self.violations.append(f"the limit sampler failed: {exc!r}")
                    return
                self._stop.wait(self.interval)
        finally:
            db_connection.close()

    def sample(self) -> None:
        over = Order.objects.filter(execution_limit__isnull=False, executions_count__gt=F("execution_limit"))
        for pk, count, limit in over.values_list("pk", "executions_count", "execution_limit"):
            self.violations.append(f"order {pk}: executions_count {count} > limit {limit}")
        overlapping = (
            Execution.objects.filter(status=ExecutionStatus.RUNNING)
            .values("order_id")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
        )
        for row in overlapping:
            self.violations.append(f"order {row['order_id']}: {row['n']} attempts running at once")
        self.samples += 1


def live_jobs_by_order(running_job_ids: set[str]) -> dict[int, set[str]]:
    """Live order jobs in Redis (scheduled, queued, deferred, or started by a run still in
    progress), grouped by order id.

    A job whose worker was SIGKILLed stays "started" in rq's registry until rq cleans it up (up to
    its timeout plus a minute later), long after the engine took its attempt back; it
    will never do anything, so a started job counts as live only while its attempt is running."""
    ids = jobqueue.all_order_job_ids()
    ids.update(StartedJobRegistry(queue=jobqueue.queue()).get_job_ids())
    grouped: dict[int, set[str]] = defaultdict(set)
    live = jobqueue.live_job_ids(ids)
    pipe = jobqueue.connection().pipeline(transaction=False)
    ordered = sorted(live)
    for job_id in ordered:
        pipe.hget(f"rq:job:{job_id}", "status")
    for job_id, status in zip(ordered, pipe.execute(), strict=True):
        if status is not None and status.decode() == "started" and job_id not in running_job_ids:
            continue
        order_id = jobqueue.order_id_of_job(job_id)
        if order_id is not None:
            grouped[order_id].add(job_id)
    return grouped


def check_invariants(
    *,
    deleted: Mapping[int, float] | None = None,
    settled: bool = True,
    effects_once: bool = True,
    sampler: LimitSampler | None = None,
    now: datetime | None = None,
) -> list[str]:
    """All invariants; `settled` adds those that hold only once the system is quiet (nothing lost,
    counts, log and executor evidence agree with the records, every active order has exactly one
    live job); without it only what is true at every instant is checked. `effects_once` demands exactly one completed
    executor call per succeeded occurrence (false where a fault can lose a recorded outcome,
    e.g. the database going away between the executor's return and the commit of its result)."""
    deleted = dict(deleted or {})  # a snapshot taken before the reads below
    now = now or datetime.now(UTC)
    problems: list[str] = list(sampler.violations) if sampler else []
    if sampler is not None and sampler.samples == 0:
        problems.append("the limit sampler took no sample")
    orders = {o.pk: o for o in Order.objects.all()}
    executions = list(Execution.objects.all())
    log = order_log()
    calls = effects()

    by_order: dict[int, list[Execution]] = defaultdict(list)
    for e in executions:
        by_order[e.order_id].append(e)
    updated_orders = {e["order_id"] for e in log if e["event"] in ("updated", "converted", "run_now", "retried")}

    # Counting and limits.
    for pk, order in orders.items():
        runs = [e for e in by_order[pk] if e.status != ExecutionStatus.SKIPPED]
        if order.execution_limit is not None and order.executions_count > order.execution_limit:
            problems.append(f"order {pk}: executions_count {order.executions_count} > {order.execution_limit}")
        if not settled:
            # The rest compares reads taken at different moments: only sound once all is quiet.
            continue
        if order.executions_count != len(runs):
            problems.append(f"order {pk}: executions_count {order.executions_count} but {len(runs)} execution rows")
        finished = order.status in (OrderStatus.COMPLETED, OrderStatus.FAILED)
        if order.is_recurring and order.max_executions and finished and order.executions_count != order.max_executions:
            problems.append(
                f"order {pk}: recurring order finished with {order.executions_count} of {order.max_executions}"
            )
        pristine_one_time = not order.is_recurring and pk not in updated_orders
        if pristine_one_time and order.status == OrderStatus.COMPLETED:
            ok = [e for e in runs if e.status == ExecutionStatus.SUCCEEDED]
            if len(runs) != 1 or len(ok) != 1:
                problems.append(f"one-time order {pk}: {len(runs)} executions, {len(ok)} succeeded (want 1, 1)")
        overdue = order.next_run_at is not None and order.next_run_at < now - timedelta(seconds=5)
        if order.status in ACTIVE and overdue:
            problems.append(f"order {pk}: lost: its next run was due at {order.next_run_at} and never ran")

    # Never early, never twice.
    for e in executions:
        if e.kind == ExecutionKind.SCHEDULED and e.started_at is not None and e.started_at < e.scheduled_for:
            problems.append(f"order {e.order_id} occurrence {e.occurrence}: started before it was due")
        if settled and e.status == ExecutionStatus.RUNNING and e.lease_expires_at and e.lease_expires_at < now:
            problems.append(f"order {e.order_id} occurrence {e.occurrence}: abandoned run never recovered")
    slots = Counter(
        (e.order_id, e.schedule_version, e.grid_index) for e in executions if e.kind == ExecutionKind.SCHEDULED
    )
    problems += [f"order {o}: slot v{v} k{k} has {n} executions" for (o, v, k), n in slots.items() if n > 1]
    # One chain at a time: once a run of a newer definition started, no run of an older one follows.
    for pk, rows in by_order.items():
        chain = sorted(
            (e.started_at, e.schedule_version) for e in rows if e.kind == ExecutionKind.SCHEDULED and e.started_at
        )
        for (_t1, v1), (t2, v2) in itertools.pairwise(chain):
            if v2 < v1:
                problems.append(f"order {pk}: a run of version {v2} started at {t2.isoformat()} after one of v{v1}")
    occurrences = Counter((e.order_id, e.occurrence) for e in executions)
    problems += [f"order {o}: occurrence {occ} recorded {n} times" for (o, occ), n in occurrences.items() if n > 1]

    problems += _nothing_after_delete(orders, deleted, log, calls)
    if settled:
        problems += _log_agrees(orders, executions, log)
        problems += _effects_agree(executions, log, calls, effects_once=effects_once)
        problems += _one_live_job_each(orders, executions, deleted)
    return problems


def _log_agrees(orders: Mapping[int, Order], executions: Iterable[Execution], log: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    started = Counter((e["order_id"], e["occurrence"], e["attempt"]) for e in log if e["event"] == "started")
    problems += [
        f"order {o} occurrence {occ} attempt {a}: started {n} times" for (o, occ, a), n in started.items() if n > 1
    ]
    attempts_logged: dict[tuple[int, int], int] = Counter((o, occ) for (o, occ, _a) in started)
    succeeded = Counter((e["order_id"], e["occurrence"]) for e in log if e["event"] == "succeeded")
    skipped_ranges: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for line in log:
        if line["event"] == "skipped":
            skipped_ranges[line["order_id"]].append((line["grid_from"], line["grid_to"]))
    known = set()
    for ex in executions:
        key = (ex.order_id, ex.occurrence)
        known.add(key)
        # A worker killed between recording an attempt's start and logging it leaves a WorkerLost
        # attempt without its started line (it is charged: it may have begun); nothing else may.
        lost = sum(1 for h in ex.attempt_history if str(h.get("error", "")).startswith("WorkerLost"))
        if not ex.attempts - lost <= attempts_logged.get(key, 0) <= ex.attempts:
            problems.append(
                f"order {ex.order_id} occurrence {ex.occurrence}: {ex.attempts} attempts recorded, "
                f"{attempts_logged.get(key, 0)} started lines"
            )
        want = 1 if ex.status == ExecutionStatus.SUCCEEDED else 0
        if succeeded.get(key, 0) != want:
            problems.append(
                f"order {ex.order_id} occurrence {ex.occurrence}: status {ex.status}, "
                f"{succeeded.get(key, 0)} succeeded lines"
            )
        if ex.status == ExecutionStatus.SKIPPED and not any(
            lo <= (ex.grid_index or 0) <= hi for lo, hi in skipped_ranges[ex.order_id]
        ):
            problems.append(f"order {ex.order_id} slot {ex.grid_index}: skipped without a skipped line")
    for o, occ in attempts_logged:
        if o in orders and (o, occ) not in known:
            problems.append(f"order {o} occurrence {occ}: logged as started but has no record")
    return problems


def _effects_agree(
    executions: Iterable[Execution], log: list[dict[str, Any]], calls: list[dict[str, Any]], *, effects_once: bool
) -> list[str]:
    problems: list[str] = []
    started = Counter(f"order-{e['order_id']}-occurrence-{e['occurrence']}" for e in log if e["event"] == "started")
    begins = Counter(c["key"] for c in calls if c["phase"] == "begin")
    ends = Counter(c["key"] for c in calls if c["phase"] == "end")
    for key, n in begins.items():
        if n > started.get(key, 0):
            problems.append(f"{key}: executor called {n} times but only {started.get(key, 0)} starts were logged")
    for e in executions:
        key = f"order-{e.order_id}-occurrence-{e.occurrence}"
        if e.status == ExecutionStatus.SUCCEEDED:
            if ends.get(key, 0) < 1 or (effects_once and ends[key] != 1):
                problems.append(f"{key}: succeeded with {ends.get(key, 0)} completed executor calls")
        elif e.status in (ExecutionStatus.FAILED, ExecutionStatus.SKIPPED) and ends.get(key, 0):
            problems.append(f"{key}: {e.status} but the executor completed {ends[key]} times")
    # Two calls for one order never overlap in time (calls cut short by a crash have no end).
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    open_calls: dict[tuple[str, int, int], float] = {}
    for c in sorted(calls, key=lambda c: c["t"]):
        ident = (c["key"], c["attempt"], c["pid"])
        if c["phase"] == "begin":
            open_calls[ident] = c["t"]
        elif ident in open_calls:
            spans[c["order_id"]].append((open_calls.pop(ident), c["t"]))
    for order_id, items in spans.items():
        items.sort()
        for (_b1, e1), (b2, _e2) in itertools.pairwise(items):
            if b2 < e1:
                problems.append(f"order {order_id}: two executor calls overlapped")
    return problems


def _nothing_after_delete(
    orders: Mapping[int, Order], deleted: Mapping[int, float], log: list[dict[str, Any]], calls: list[dict[str, Any]]
) -> list[str]:
    problems: list[str] = []
    # Last start and last executor call per order, so that a soak's thousands of deletes stay cheap.
    last_start: dict[int, float] = {}
    for e in log:
        if e["event"] == "started" and e["order_id"] in deleted:
            last_start[e["order_id"]] = max(last_start.get(e["order_id"], 0.0), _log_time(e))
    last_call: dict[int, float] = {}
    for c in calls:
        if c["phase"] == "begin" and c["order_id"] in deleted:
            last_call[c["order_id"]] = max(last_call.get(c["order_id"], 0.0), c["t"])
    for pk, at in deleted.items():
        if pk in orders:
            problems.append(f"order {pk}: DELETE returned but the order still exists")
        if last_start.get(pk, 0.0) > at + DELETE_TOLERANCE_SECONDS:
            problems.append(f"order {pk}: a run started {last_start[pk] - at:.2f}s after DELETE returned")
        if last_call.get(pk, 0.0) > at + DELETE_TOLERANCE_SECONDS:
            problems.append(f"order {pk}: the executor was called {last_call[pk] - at:.2f}s after DELETE returned")
    return problems


def _one_live_job_each(
    orders: Mapping[int, Order], executions: Iterable[Execution], deleted: Mapping[int, float]
) -> list[str]:
    problems: list[str] = []
    running = {e.job_id for e in executions if e.status == ExecutionStatus.RUNNING}
    live = live_jobs_by_order(running)
    waiting = defaultdict(set)
    for e in executions:
        if e.status in (ExecutionStatus.PENDING, ExecutionStatus.RETRYING) and e.job_id:
            waiting[e.order_id].add(e.job_id)
    for pk, order in orders.items():
        jobs = live.get(pk, set())
        occurrence_jobs = {j for j in jobs if j not in waiting[pk]}
        wants_job = order.status in ACTIVE and order.next_run_at is not None
        if wants_job and occurrence_jobs != {order.job_id}:
            problems.append(f"order {pk} ({order.status}): live jobs {sorted(occurrence_jobs)}, want [{order.job_id}]")
        if not wants_job and occurrence_jobs:
            problems.append(f"order {pk} ({order.status}, no next run): live jobs {sorted(occurrence_jobs)}")
        if order.status in ACTIVE and not waiting[pk] <= jobs:
            problems.append(f"order {pk}: waiting executions without a live job: {sorted(waiting[pk] - jobs)}")
    for pk in deleted:
        if live.get(pk):
            problems.append(f"deleted order {pk}: live jobs {sorted(live[pk])}")
    return problems


def assert_invariants(**kwargs: Any) -> None:
    problems = check_invariants(**kwargs)
    assert not problems, "invariants violated:\n" + "\n".join(problems[:50])


def settle(timeout: float = 60, quiet_for: float = 2.0) -> float:
    """Wait until no attempt is running or queued and nothing is overdue; return the seconds waited."""
    start = time.monotonic()
    calm_since: float | None = None
    while True:
        now = datetime.now(UTC)
        busy = Execution.objects.filter(status__in=(ExecutionStatus.RUNNING, ExecutionStatus.PENDING)).exists()
        overdue = Order.objects.filter(status__in=ACTIVE, next_run_at__lt=now - timedelta(seconds=1)).exists()
        retry_due = Execution.objects.filter(status=ExecutionStatus.RETRYING, order__status__in=ACTIVE).exists()
        if busy or overdue or retry_due:
            calm_since = None
        elif calm_since is None:
            calm_since = time.monotonic()
        elif time.monotonic() - calm_since >= quiet_for:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError("the system did not settle")
        time.sleep(0.2)
