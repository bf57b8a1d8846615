"""The one module of the product that imports rq, rq-scheduler and django-rq: the job queue in Redis.

The database is the source of truth; what lives here is a copy of the schedule that reconcile
can rebuild at any time. Nothing in this module touches the database. The connection, queue and
scheduler come from django-rq, so settings.RQ_QUEUES is the one configuration (the workers and the
admin's RQ pages read it too), and every job gets settings.ORDER_JOB_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import django_rq
import redis
from django.conf import settings
from rq import Queue, Worker
from rq.job import Job, JobStatus, validate_job_id
from rq.registry import StartedJobRegistry
from rq.serializers import DefaultSerializer
from rq.utils import get_call_string, utcformat
from rq.utils import now as rq_now
from rq_scheduler import Scheduler

logger = logging.getLogger(__name__)

OCCURRENCE_FUNC = "orders.jobs.run_occurrence"
EXECUTION_FUNC = "orders.jobs.run_execution"
HEARTBEAT_KEY = "orders:scheduler:heartbeat"
# A list the scheduler blocks on between polls: a job placed to fall due before the scheduler's next
# planned wake-up pushes here, so it is moved at its instant rather than at the next poll.
WAKE_KEY = "orders:scheduler:wake"
# Placements due within this many seconds signal the scheduler (a longer sleep never happens: the
# scheduler wakes at least every poll interval).
WAKE_HORIZON_SECONDS = 1.0
# Redis times out a blocked client at its own cron (10 times a second by default), so a blocking
# wait can return up to ~0.1 s late: block only until this long before the instant wanted, then
# sleep the rest in this process, whose clock is exact to the millisecond.
BLOCKING_WAIT_MARGIN_SECONDS = 0.12
LIVE_STATUSES = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}
# Finished jobs are useless once their effect is in the database: keep them only briefly.
RESULT_TTL_SECONDS = 60

_connection: redis.Redis | None = None


def connection() -> redis.Redis:
    """One client (and connection pool) per process: django-rq builds a new one on every call."""
    global _connection
    if _connection is None:
        _connection = django_rq.get_connection(settings.ORDER_QUEUE)
    return _connection


def reset_connection(client: redis.Redis | None = None) -> None:
    """Drop the process's client (the next call builds a new one), or use `client` instead."""
    global _connection
    _connection = client


def queue() -> Queue:
    # commit_mode="auto": enqueue at once. Every caller already runs after the database commit
    # (orders/dispatch.py); django-rq's default would defer again inside a test's transaction.
    return django_rq.get_queue(settings.ORDER_QUEUE, connection=connection(), commit_mode="auto")


def scheduler(interval: int = 1) -> Scheduler:
    """rq-scheduler for the orders queue; `interval` (whole seconds) sets the life of its lock."""
    return django_rq.get_scheduler(settings.ORDER_QUEUE, queue=queue(), interval=interval, connection=connection())


def job_timeout() -> int:
    # The executor's own limit plus room for the bookkeeping around it (settings.py).
    return int(settings.ORDER_JOB_TIMEOUT_SECONDS)


def new_job_id(order_id: int | None, label: str) -> str:
    """Job ids are unique per scheduling act, so a re-delivered or replaced job never shares a hash.

    An order's first job is named before its row exists (the create's one INSERT carries it), so
    it has no order id: "order-new-<label>-<random>" (order_id_of_job reads the id from the job)."""
    owner = "new" if order_id is None else str(order_id)
    return f"order-{owner}-{label}-{uuid.uuid4().hex[:12]}"


def _due_score(due: datetime) -> float:
    """The job's score in rq-scheduler's sorted set: the exact due instant in epoch seconds.

    rq-scheduler itself writes and compares whole seconds (a job due at hh:mm:ss.9 would move 0.9 s
    early, and rounding up makes it up to a second late); move_due_jobs compares the exact instant.
    """
    return due.astimezone(UTC).timestamp()


# A scheduled job's hash as rq 2.12's Job.create(func, args=..., id=..., timeout=..., result_ttl=...,
# status="scheduled") with its origin set and then save() writes it: to_dict's fields in to_dict's
# order, the empty ones included as to_dict includes them (a job with no kwargs, callbacks, group,
# dependencies, meta, retry or ttl writes no more). Written directly because building a Job and its
# to_dict on every create cost more CPU than the write itself; tests/test_jobqueue_write.py holds
# this shape to rq's own save field by field, so an rq upgrade that changes it fails there.
_SCHEDULED_JOB_EMPTY_FIELDS: tuple[bytes, ...] = tuple(
    part
    for name in (
        "success_callback_name",
        "failure_callback_name",
        "stopped_callback_name",
        "started_at",
        "ended_at",
        "last_heartbeat",
        "worker_name",
        "group_id",
    )
    for part in (name.encode(), b"")
)


def _scheduled_job_fields(func: str, args: tuple[object, ...], *, early: bool) -> list[object]:
    """The HSET arguments (field, value, ...) of a scheduled job's hash; the values of `data`,
    `created_at` and `description` come from rq's own serializer and formatters, so a worker reads
    the job as one rq wrote."""
    fields: list[object] = [
        b"created_at",
        utcformat(rq_now()),
        b"data",
        zlib.compress(DefaultSerializer.dumps((func, None, args, {}))),
        *_SCHEDULED_JOB_EMPTY_FIELDS,
        b"origin",
        settings.ORDER_QUEUE,
        b"description",
        get_call_string(func, args, {}, max_length=75),
        b"timeout",
        job_timeout(),
        b"result_ttl",
        RESULT_TTL_SECONDS,
        b"status",
        JobStatus.SCHEDULED.value,
    ]
    if early:
        # rq-scheduler's job plus the hand-off's mark, in the same HSET (HANDOFF_EARLY_FIELD).
        fields += (HANDOFF_EARLY_FIELD, b"1")
    return fields


def _write_scheduled(
    pipe: redis.client.Pipeline,
    job_id: str,
    func: str,
    args: tuple[object, ...],
    due: datetime,
    *,
    early: bool = False,
) -> None:
    """Write a future job exactly as rq-scheduler's enqueue_at does (a job hash with status
    "scheduled" and an entry in its sorted set), with the exact due instant as its score.
    `early`: the scheduler may move it ahead of its instant (the early hand-off: only occurrence
    jobs, whose worker waits for the instant; a retry or a postponed run must not start before it)."""
    validate_job_id(job_id)  # as Job.create does: a bad id raises before anything is written
    pipe.execute_command("HSET", Job.key_for(job_id), *_scheduled_job_fields(func, args, early=early))
    score = _due_score(due)
    pipe.zadd(Scheduler.scheduled_jobs_key, {job_id: score})
    if score - time.time() < WAKE_HORIZON_SECONDS:
        pipe.lpush(WAKE_KEY, job_id)
        pipe.ltrim(WAKE_KEY, 0, 0)
        pipe.pexpire(WAKE_KEY, int(WAKE_HORIZON_SECONDS * 1000))


def _enqueue_now(job_id: str, func: str, args: tuple[object, ...], *, at_front: bool = False) -> None:
    queue().enqueue(
        func,
        args=args,
        at_front=at_front,
        job_id=job_id,
        job_timeout=job_timeout(),
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=7 * 86400,
    )


def _enqueue_now_in(
    pipe: redis.client.Pipeline, job_id: str, func: str, args: tuple[object, ...], *, at_front: bool = False
) -> None:
    """_enqueue_now written into a pipeline: many due jobs (a rebuild after Redis lost its data) reach
    the queue in one round trip instead of one enqueue each."""
    q = queue()
    job = Job.create(
        func,
        args=args,
        connection=connection(),
        id=job_id,
        timeout=job_timeout(),
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=7 * 86400,
        origin=q.name,
    )
    q.enqueue_job(job, pipeline=pipe, at_front=at_front)


def _place(job_id: str, func: str, args: tuple[object, ...], due: datetime | None, *, at_front: bool = False) -> None:
    """Put a job in the queue now (due is None or past; `at_front`: ahead of the jobs waiting) or in
    rq-scheduler's sorted set."""
    if due is None or due <= datetime.now(UTC):
        _enqueue_now(job_id, func, args, at_front=at_front)
        return
    pipe = connection().pipeline(transaction=False)
    _write_scheduled(pipe, job_id, func, args, due)
    pipe.execute()


class OccurrenceJob(NamedTuple):
    """The job that runs grid occurrence `grid_index` of version `version` of an order at `due`."""

    job_id: str
    order_id: int
    version: int
    grid_index: int
    due: datetime


def schedule_occurrence(job: OccurrenceJob) -> None:
    # The pipelined writer: one round trip instead of rq-scheduler's three (every create pays it).
    schedule_occurrences([job])


def schedule_occurrences(jobs: list[OccurrenceJob], *, at_front: bool = False) -> None:
    """Many schedule_occurrence calls in one round trip (reconcile rebuilding a lost schedule);
    due ones go to the queue at once."""
    now = datetime.now(UTC)
    conn = connection()
    # Each pipeline is built only when a job needs it: a create places one future job.
    pipe: redis.client.Pipeline | None = None
    due_pipe: redis.client.Pipeline | None = None
    for p in jobs:
        args = (p.order_id, p.version, p.grid_index)
        if p.due <= now:
            if due_pipe is None:
                # rq's enqueue_job into a pipeline wants it in MULTI mode from the start.
                due_pipe = conn.pipeline()
                due_pipe.multi()
            _enqueue_now_in(due_pipe, p.job_id, OCCURRENCE_FUNC, args, at_front=at_front)
        else:
            if pipe is None:
                pipe = conn.pipeline(transaction=False)
            _write_scheduled(pipe, p.job_id, OCCURRENCE_FUNC, args, p.due, early=True)
    if due_pipe is not None:
        due_pipe.execute()
    if pipe is not None:
        pipe.execute()


def schedule_execution(
    *, job_id: str, execution_id: int, attempt: int, due: datetime | None, at_front: bool = False
) -> None:
    """A job for one attempt of a given execution row (manual runs, retries)."""
    _place(job_id, EXECUTION_FUNC, (execution_id, attempt), due, at_front=at_front)


def cancel(job_id: str) -> None:
    """Remove a job so it never starts. A job already started is left alone: it re-reads the order
    and sees that its definition is gone."""
    if not job_id:
        return
    conn = connection()
    conn.zrem(Scheduler.scheduled_jobs_key, job_id)
    try:
        job = Job.fetch(job_id, connection=conn)
    except Exception:  # noqa: BLE001 - a missing or unreadable job is already cancelled
        return
    if job.get_status(refresh=False) == JobStatus.STARTED:
        return
    queue().remove(job_id)
    job.delete(remove_from_queue=False)


def discard(job_ids: Iterable[str]) -> int:
    """Drop jobs that have not been handed to a worker yet, in two round trips (an execution batch
    took their orders itself). Returns how many were dropped.

    Best effort: a job a worker already popped is left alone, and a job rq-scheduler is moving at
    this instant (it reads the job, pushes it to the queue, then removes it from its set) can be
    written back by rq-scheduler after the hash is deleted here. Either way the job runs, re-reads
    its order under the lock and finds its slot taken: no effect."""
    ids = [j for j in job_ids if j]
    if not ids:
        return 0
    conn = connection()
    queue_key = queue().key
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.lrem(queue_key, 1, job_id)
        pipe.zrem(Scheduler.scheduled_jobs_key, job_id)
    replies = pipe.execute()
    gone = [job_id for i, job_id in enumerate(ids) if replies[2 * i] or replies[2 * i + 1]]
    if gone:
        conn.delete(*[Job.key_for(job_id) for job_id in gone])
    return len(gone)


def live_job_ids(job_ids: Iterable[str]) -> set[str]:
    """Which of these jobs are alive in Redis (scheduled, queued, started or deferred)."""
    ids = [j for j in job_ids if j]
    if not ids:
        return set()
    conn = connection()
    pipe = conn.pipeline(transaction=False)
    for job_id in ids:
        pipe.zscore(Scheduler.scheduled_jobs_key, job_id)
        pipe.hget(f"rq:job:{job_id}", "status")
    replies = pipe.execute()
    live: set[str] = set()
    for i, job_id in enumerate(ids):
        score, status = replies[2 * i], replies[2 * i + 1]
        if status is None:
            continue
        if status.decode() == JobStatus.SCHEDULED:
            # rq-scheduler writes the hash, then the sorted-set entry: only both make it live.
            if score is not None:
                live.add(job_id)
        elif status.decode() in LIVE_STATUSES:
            live.add(job_id)
    return live


def all_order_job_ids() -> set[str]:
    """Every order job id known to the schedule or the queue (for reconcile's orphan sweep)."""
    conn = connection()
    raw: list[bytes] = conn.zrange(Scheduler.scheduled_jobs_key, 0, -1)  # type: ignore[assignment]
    ids = {j.decode() for j in raw}
    ids.update(queue().get_job_ids())
    return {j for j in ids if j.startswith("order-")}


def move_due_jobs(*, now: float | None = None) -> int:
    """Move every job due by `now` into its queue, as the scheduler's poll does but outside its lease
    (tests, benchmarks, tools). Returns how many were moved."""
    moved = 0
    while True:
        result = poll_schedule(owner="", lease_ms=0, now=now)
        moved += result.moved
        if not result.more_due:
            return moved


# --- the scheduler's poll: its lease, the Redis-loss sentinel and the move, in one round trip ------
#
# SCHEDULER_LEASE_KEY holds the id of the one scheduler allowed to move due jobs, for
# SCHEDULER_LEASE_MS; the holder renews it on every poll (a compare-and-set, so a lease another
# process holds is never extended or deleted), a standby takes it once it has expired. The move is
# part of the same script, so no job is moved by a process that does not hold the lease at that
# instant: two schedulers never both move jobs, whatever their pauses. SENTINEL_KEY is written once
# and never expires: if it is gone, Redis lost its data (FLUSHALL, a restart without persistence,
# failover to an empty replica) and the schedule must be rebuilt from the database.
SCHEDULER_LEASE_KEY = "orders:scheduler:lease"
SENTINEL_KEY = "orders:redis:sentinel"
QUEUES_SET_KEY = "rq:queues"  # rq's set of queue keys (Queue.redis_queues_keys)

_POLL_SCRIPT = """
local lease = redis.call('GET', KEYS[1])
local held = 0
if ARGV[1] == '' then
  held = 1
elseif lease == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  held = 1
elseif (not lease) or (ARGV[7] ~= '' and lease == ARGV[7]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  held = 2
end
local sentinel = redis.call('GET', KEYS[2])
if (not sentinel) and ARGV[4] ~= '' then
  redis.call('SET', KEYS[2], ARGV[4])
end
if ARGV[1] ~= '' then
  redis.call('SET', KEYS[3], ARGV[3], 'EX', 120)
end
local moved = 0
local more = 0
local wake = nil
if held > 0 then
  local found = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[5], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[6]))
  for i = 1, #found, 2 do
    local id = found[i]
    local score = tonumber(found[i + 1])
    local key = 'rq:job:' .. id
    local early = score > tonumber(ARGV[3])
    if early and redis.call('HGET', key, 'orders_lead') ~= '1' then
      -- Not an occurrence (a retry, a postponed run): it moves at its instant, not before.
      if (not wake) or score < wake then
        wake = score
      end
    else
      if redis.call('EXISTS', key) == 1 then
        redis.call('HSET', key, 'status', 'queued', 'enqueued_at', ARGV[8])
        if early then
          redis.call('HSET', key, 'orders_due', found[i + 1])
        end
        redis.call('RPUSH', KEYS[5], id)
        moved = moved + 1
      end
      redis.call('ZREM', KEYS[4], id)
    end
  end
  if moved > 0 then
    redis.call('SADD', KEYS[6], KEYS[5])
  end
  if #found == 2 * tonumber(ARGV[6]) and moved > 0 then
    more = 1
  end
end
local beyond = redis.call('ZRANGEBYSCORE', KEYS[4], '(' .. ARGV[5], '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
if beyond[1] then
  local at = tonumber(beyond[2])
  if redis.call('HGET', 'rq:job:' .. beyond[1], 'orders_lead') == '1' then
    at = at - tonumber(ARGV[9])
  end
  if (not wake) or at < wake then
    wake = at
  end
end
return {held, sentinel or false, moved, wake and tostring(wake) or false, more, lease or false}
"""


# The field of a job's hash that holds its due instant when the scheduler moved it early (the early
# hand-off; the poll script writes it); a queued job without it is due now. HANDOFF_EARLY_FIELD marks
# the jobs that may be moved early at all (occurrence jobs). _POLL_SCRIPT spells both out.
HANDOFF_DUE_FIELD = "orders_due"
HANDOFF_EARLY_FIELD = "orders_lead"


class PollResult(NamedTuple):
    held: bool  # this process holds the lease (and moved what was due)
    acquired: bool  # ... and took it in this poll (it was free, expired or handed over)
    sentinel: str | None  # the sentinel found; None: it was missing (written now if a value was given)
    moved: int
    more_due: bool  # the move stopped at its limit: poll again at once
    # Seconds until the next job is to be moved (an occurrence's instant less the lead, any other
    # job's instant; negative: overdue); None when nothing is scheduled.
    next_due_in: float | None
    lease_holder: str | None  # the lease's value before this poll


def poll_schedule(
    *,
    owner: str,
    lease_ms: int,
    new_sentinel: str = "",
    take_over_from: str = "",
    limit: int = 1000,
    now: float | None = None,
    lead: float = 0.0,
) -> PollResult:
    """The scheduler's whole poll in one script: renew or take the lease, check (and write a missing)
    sentinel, write the heartbeat, and, holding the lease, move every job due by `now` into the
    queue as rq-scheduler's enqueue_job does (status queued, enqueued_at, pushed to the queue).
    `lead`: also move the jobs due within this many seconds (the early hand-off); each of those
    carries its due instant in its hash (HANDOFF_DUE_FIELD), so a worker knows it holds work not yet due.

    An empty `owner` moves without the lease (and writes no heartbeat): move_due_jobs.
    `take_over_from`: a lease value the caller knows is stale (its own previous process) and may
    replace at once. Our jobs never repeat, so rq-scheduler's interval and cron handling is not needed.
    """
    at = time.time() if now is None else now
    enqueued_at = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    reply = connection().eval(
        _POLL_SCRIPT,
        6,
        SCHEDULER_LEASE_KEY,
        SENTINEL_KEY,
        HEARTBEAT_KEY,
        Scheduler.scheduled_jobs_key,
        queue().key,
        QUEUES_SET_KEY,
        owner,
        lease_ms,
        repr(at),
        new_sentinel,
        repr(at + max(0.0, lead)),
        limit,
        take_over_from,
        enqueued_at,
        repr(max(0.0, lead)),
    )
    held, sentinel, moved, first_score, more, holder = reply
    return PollResult(
        held=held > 0,
        acquired=held == 2,
        sentinel=sentinel.decode() if sentinel is not None else None,
        moved=int(moved),
        more_due=bool(more),
        next_due_in=float(first_score) - time.time() if first_score is not None else None,
        lease_holder=holder.decode() if holder is not None else None,
    )


_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def release_scheduler_lease(owner: str) -> bool:
    """Give the lease up (a clean exit) if this process still holds it, so a standby takes over at its
    next poll instead of after the lease's expiry."""
    return bool(connection().eval(_RELEASE_SCRIPT, 1, SCHEDULER_LEASE_KEY, owner))


def scheduler_lease_holder() -> str | None:
    raw: bytes | None = connection().get(SCHEDULER_LEASE_KEY)  # type: ignore[assignment]
    return raw.decode() if raw is not None else None


def redis_run_id() -> str:
    """The Redis server's run id: a new one after every restart and on a failover to another server."""
    return str(connection().info("server")["run_id"])


def seconds_until_next_due() -> float | None:
    """How long until the earliest scheduled job falls due (negative: overdue); None when none is."""
    first = connection().zrange(Scheduler.scheduled_jobs_key, 0, 0, withscores=True)
    if not first:
        return None
    return float(first[0][1]) - time.time()


def wait_for_due_or_wake(seconds: float) -> None:
    """Sleep up to `seconds`, returning early when a placement signals a job due sooner.

    The long part of the wait blocks on WAKE_KEY; the last BLOCKING_WAIT_MARGIN_SECONDS are slept
    here, since Redis ends a blocking wait only at its own cron tick (see the constant)."""
    blocking = seconds - BLOCKING_WAIT_MARGIN_SECONDS
    if blocking >= 0.01:
        began = time.monotonic()
        if connection().blpop([WAKE_KEY], timeout=blocking) is not None:
            return
        seconds -= time.monotonic() - began
    if seconds > 0:
        time.sleep(seconds)


def clean_started_registry() -> None:
    """Let rq move jobs of dead workers out of the started registry (marks them abandoned)."""
    StartedJobRegistry(queue=queue()).cleanup()


RECONCILE_LEASE_KEY = "orders:reconcile:lease"


def acquire_reconcile_lease(*, ttl: int, force: bool = False) -> str | None:
    """One reconcile per period across all schedulers: the first to set the key runs it."""
    token = uuid.uuid4().hex
    if force:
        connection().set(RECONCILE_LEASE_KEY, token, ex=ttl)
        return token
    return token if connection().set(RECONCILE_LEASE_KEY, token, nx=True, ex=ttl) else None


def release_reconcile_lease(token: str) -> None:
    """Give the lease back (after a failed pass) if it is still ours."""
    with contextlib.suppress(redis.RedisError):
        if connection().get(RECONCILE_LEASE_KEY) == token.encode():
            connection().delete(RECONCILE_LEASE_KEY)


# --- worker liveness ------------------------------------------------------------------------------
#
# Every process that takes a run (an rq worker, or a forking worker's work horse) beats here: one key
# per process, rewritten every WORKER_BEAT_SECONDS and expiring after WORKER_ALIVE_SECONDS. A run records
# its holder; once the holder's key is gone the process is dead (SIGKILL, OOM, power) and its runs are
# taken back within seconds (orders/repair.py recover_abandoned), however long its executor may take
# while it is alive. The beat is a thread of its own, so a slow executor does not stop it.
WORKER_ALIVE_PREFIX = "orders:worker:alive:"
WORKER_BEAT_SECONDS = 0.5
WORKER_ALIVE_SECONDS = 3

_beat_lock = threading.Lock()
_beat_holder = ""
_beat_pid = 0


def _beat(holder: str) -> None:
    connection().set(WORKER_ALIVE_PREFIX + holder, repr(time.time()), ex=WORKER_ALIVE_SECONDS)


def _beat_forever(holder: str, pid: int) -> None:
    while _beat_pid == pid and _beat_holder == holder:
        try:
            _beat(holder)
        except Exception:
            logger.debug("worker heartbeat failed", exc_info=True)
        time.sleep(WORKER_BEAT_SECONDS)


def worker_holder() -> str:
    """This process's holder id, beating from a background thread started on first use (again in a
    forked child, which inherits the id but not the thread). The first beat is written here, before
    any run can record the id: a holder is never seen without its key."""
    global _beat_holder, _beat_pid
    pid = os.getpid()
    if _beat_pid == pid and _beat_holder:
        return _beat_holder
    with _beat_lock:
        if _beat_pid != pid or not _beat_holder:
            holder = f"{socket.gethostname()[:40]}:{pid}:{uuid.uuid4().hex[:12]}"
            with contextlib.suppress(redis.RedisError):
                _beat(holder)
            _beat_holder, _beat_pid = holder, pid
            threading.Thread(target=_beat_forever, args=(holder, pid), name="order-liveness", daemon=True).start()
    return _beat_holder


# A hash per holder, execution id -> epoch seconds: the batch companions whose executor this process
# began and has not recorded yet. One HSET before each executor (a tenth of a millisecond) where an
# autocommitted UPDATE of the row costs milliseconds (measured: 8 ms median on the shared MariaDB);
# it lives a day at most, and is dropped when the batch's outcomes are recorded.
WORKER_BEGAN_PREFIX = "orders:worker:began:"
BEGAN_TTL_SECONDS = 86400


def note_began(holder: str, execution_id: int, at: float) -> None:
    pipe = connection().pipeline(transaction=False)
    pipe.hset(WORKER_BEGAN_PREFIX + holder, str(execution_id), repr(at))
    pipe.expire(WORKER_BEGAN_PREFIX + holder, BEGAN_TTL_SECONDS)
    pipe.execute()


def forget_began(holder: str) -> None:
    connection().delete(WORKER_BEGAN_PREFIX + holder)


def began_noted(holders: Iterable[str]) -> dict[int, float]:
    """The executions these holders noted as begun (note_began), with when: one round trip."""
    wanted = sorted({h for h in holders if h})
    if not wanted:
        return {}
    pipe = connection().pipeline(transaction=False)
    for holder in wanted:
        pipe.hgetall(WORKER_BEGAN_PREFIX + holder)
    noted: dict[int, float] = {}
    for entries in pipe.execute():
        noted.update({int(k): float(v) for k, v in entries.items()})
    return noted


# Written (without expiry) by the first liveness check on this Redis: when it is missing, Redis lost
# its data (flushed, restarted empty, failed over to an empty replica) and with it the keys of live
# workers too, which come back within a beat. Absence is evidence of death only once Redis has kept
# its data for longer than a key lives.
LIVENESS_SINCE_KEY = "orders:worker:liveness-since"


def living_holders(holders: Iterable[str]) -> set[str] | None:
    """Which of these holders' processes are alive (their key exists), in one round trip; None when
    Redis lost its data too recently to tell (see LIVENESS_SINCE_KEY)."""
    wanted = sorted({h for h in holders if h})
    pipe = connection().pipeline(transaction=False)
    pipe.set(LIVENESS_SINCE_KEY, repr(time.time()), nx=True)
    pipe.get(LIVENESS_SINCE_KEY)
    if wanted:
        pipe.mget([WORKER_ALIVE_PREFIX + h for h in wanted])
    replies = pipe.execute()
    since = float(replies[1]) if replies[1] is not None else time.time()
    if time.time() - since < WORKER_ALIVE_SECONDS + WORKER_BEAT_SECONDS:
        return None
    if not wanted:
        return set()
    return {h for h, value in zip(wanted, replies[2], strict=True) if value is not None}


def write_heartbeat() -> None:
    connection().set(HEARTBEAT_KEY, repr(time.time()), ex=120)


def read_heartbeat() -> float | None:
    raw = connection().get(HEARTBEAT_KEY)
    return float(raw) if raw is not None else None


def live_worker_count() -> int:
    """Workers registered on this Redis that are not suspended (for /healthz)."""
    return sum(1 for worker in Worker.all(connection=connection()) if worker.get_state() != "suspended")


def scheduled_count() -> int:
    return int(connection().zcard(Scheduler.scheduled_jobs_key))


def queued_count() -> int:
    """Jobs in the orders queue waiting for a worker (for the metrics)."""
    return int(queue().count)


def order_id_of_job(job_id: str) -> int | None:
    """The order a job belongs to: from its id, or for an order's first job (named before the row
    existed, see new_job_id) from the job's own arguments. None for a job that is not an order's."""
    if not job_id.startswith("order-"):
        return None
    owner = job_id.split("-")[1]
    if owner.isdigit():
        return int(owner)
    try:
        job = Job.fetch(job_id, connection=connection())
    except Exception:  # noqa: BLE001 - a job gone meanwhile belongs to no one
        return None
    return int(job.args[0]) if job.func_name == OCCURRENCE_FUNC and job.args else None


# --- the early hand-off: a worker waiting in place for a job that is not due yet ---------------------
#
# The scheduler moves jobs up to settings.ORDER_HANDOFF_LEAD_SECONDS before their instant; the worker
# that pops one waits for it (orders/engine.py, wait_until_due). While it waits, WAITING_KEY names
# it as the holder of that job, so a worker killed in the wait is noticed by the abandoned-run check
# (its heartbeat is gone) and the order gets a new job within seconds (repair.recover_abandoned),
# as a run taken by a dead worker does.
WAITING_KEY = "orders:handoff:waiting"

# The first due job within the first ARGV[3] entries of the queue: one without a due instant (a
# run-now, a retry, a postponed run, a job moved at its instant) or whose instant has come.
_DUE_WORK_SCRIPT = """
local ids = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[3]) - 1)
local now = tonumber(ARGV[1])
for i = 1, #ids do
  local due = redis.call('HGET', 'rq:job:' .. ids[i], ARGV[2])
  if (not due) or tonumber(due) <= now then
    return ids[i]
  end
end
return false
"""

# The due job ARGV[2] is brought to the head (rq pops from there) and the job given back, ARGV[1],
# goes right behind it; if the due job was taken meanwhile, the job given back goes to the head.
_HAND_BACK_SCRIPT = """
local found = 0
if ARGV[2] ~= '' then
  found = redis.call('LREM', KEYS[1], 1, ARGV[2])
end
redis.call('LPUSH', KEYS[1], ARGV[1])
if found > 0 then
  redis.call('LPUSH', KEYS[1], ARGV[2])
end
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""


def handoff_scan_depth() -> int:
    """How many entries from the queue's head the check for due work reads (due_work_waiting).

    Bounded, since the check runs every 20 ms in each waiting worker and reads one hash field per
    entry: at the default 200 (2 x ORDER_BATCH_SIZE) a check that finds nothing due took about
    0.25 ms a round trip, against 0.06-0.1 ms reading the head alone (measured on the 2-core
    reference machine; only a queue that deep, in a burst, pays the whole of it). Two batches'
    worth, because the jobs moved early that sit in front of a due job fall due within the lead and
    are then taken by batches of up to ORDER_BATCH_SIZE (a worker drops its companions' jobs): a due
    job deeper than that waits at most the lead more than it would have, behind work due by then."""
    return max(1, 2 * int(settings.ORDER_BATCH_SIZE))


def current_job_id() -> str:
    """The id of the job this worker is running ("" outside a job)."""
    from rq import get_current_job

    job = get_current_job()
    return job.id if job is not None else ""


def due_work_waiting() -> str | None:
    """The id of the first job due now among the first handoff_scan_depth() entries of the queue (a
    job moved early carries its due instant, any other queued job is due), else None: one round trip.
    It need not be at the head: a run-now enqueued while jobs moved early wait there sits behind them."""
    due = connection().eval(
        _DUE_WORK_SCRIPT, 1, queue().key, repr(time.time()), HANDOFF_DUE_FIELD, handoff_scan_depth()
    )
    return due.decode() if due is not None else None


def hand_back(job: OccurrenceJob, *, behind: str) -> None:
    """Give a job moved early back to the queue as a new job, right behind `behind` (the due job the
    giving worker makes room for, brought to the head in the same script, so it is the next job popped
    wherever it was), or at the head if that one was taken meanwhile. Either way it stays ahead of
    the jobs moved early after it, which are due no sooner (the scheduler moves jobs in due order)."""
    q = queue()
    created = Job.create(
        OCCURRENCE_FUNC,
        args=(job.order_id, job.version, job.grid_index),
        connection=connection(),
        id=job.job_id,
        timeout=job_timeout(),
        result_ttl=RESULT_TTL_SECONDS,
        failure_ttl=7 * 86400,
        origin=q.name,
        status=JobStatus.QUEUED,
    )
    created.enqueued_at = datetime.now(UTC)
    pipe = connection().pipeline(transaction=False)
    created.save(pipeline=pipe)
    pipe.hset(created.key, HANDOFF_DUE_FIELD, repr(_due_score(job.due)))
    pipe.eval(_HAND_BACK_SCRIPT, 2, q.key, QUEUES_SET_KEY, job.job_id, behind)
    pipe.execute()


class WaitNote(NamedTuple):
    """A worker (holder) waiting for the instant of grid slot (version, grid_index) of an order."""

    holder: str
    order_id: int
    version: int
    grid_index: int


_NOTE_WAITING_SCRIPT = """
local due = redis.call('HGET', 'rq:job:' .. ARGV[1], ARGV[4])
if (not due) or tonumber(due) <= tonumber(ARGV[3]) then
  return false
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return due
"""


def note_waiting_if_early(job_id: str, wait: WaitNote) -> float | None:
    """If the job was moved ahead of its instant and that instant is still to come, name `wait`'s
    holder as the one waiting for it (WAITING_KEY) and return the instant (epoch seconds); else
    None. One round trip, and no database read: the job carries its own instant."""
    due = connection().eval(
        _NOTE_WAITING_SCRIPT, 1, WAITING_KEY, job_id, " ".join(map(str, wait)), repr(time.time()), HANDOFF_DUE_FIELD
    )
    return float(due) if due is not None else None


def note_waiting(job_id: str, wait: WaitNote) -> None:
    connection().hset(WAITING_KEY, job_id, " ".join(map(str, wait)))


def forget_waiting(job_id: str) -> None:
    connection().hdel(WAITING_KEY, job_id)


def _parse_wait_note(value: bytes) -> WaitNote:
    holder, order_id, version, grid_index = value.decode().rsplit(" ", 3)
    if not holder:
        raise ValueError("no holder")
    return WaitNote(holder, int(order_id), int(version), int(grid_index))


def waiting_jobs() -> dict[str, WaitNote]:
    """Every job a worker waits for in place, by job id. An entry that is not a wait note (written by
    something else, or by another version) is logged and removed: it names no holder whose death could
    be seen, and would otherwise stay for ever; the others are read all the same."""
    raw: dict[bytes, bytes] = connection().hgetall(WAITING_KEY)  # type: ignore[assignment]
    out: dict[str, WaitNote] = {}
    malformed: list[bytes] = []
    for key, value in raw.items():
        try:
            out[key.decode()] = _parse_wait_note(value)
        except ValueError:  # UnicodeDecodeError is one too
            logger.warning("removing a malformed wait note for job %s: %r", key.decode(errors="replace"), value)
            malformed.append(key)
    if malformed:
        connection().hdel(WAITING_KEY, *malformed)
    return out


def forget_waiting_jobs(job_ids: Iterable[str]) -> None:
    ids = list(job_ids)
    if ids:
        connection().hdel(WAITING_KEY, *ids)
