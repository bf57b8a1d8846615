"""Which scheduler moves due jobs, and noticing that Redis lost its data: the scheduler's poll.

Several `manage.py rqscheduler` processes may run (README, "Several schedulers"). One of them holds
a lease in Redis (SCHEDULER_LEASE_MS, renewed on every poll, 5 times a second by default) and moves
due jobs; the others poll at their interval and take the lease once it has expired, so a killed
scheduler is replaced within the lease plus one poll interval (1.7 s by default). The move is part
of the same Redis script as the lease check (orders/jobqueue.py, poll_schedule), so two schedulers
never both move jobs. A scheduler restarted on the same host takes its own stale lease at once (a
previous process of this host whose pid is gone, or had this very pid, as pid 1 in a container).

The same script checks a sentinel key that is written once and never expires: when it is gone,
Redis lost its data (FLUSHALL, a restart without persistence, failover to an empty replica), and
the process that notices it (at its next poll, within the poll interval) rebuilds the schedule from
the database at once (repair.reconcile) in a thread of its own. A change of the server's run id
(checked every RUN_ID_CHECK_SECONDS) is also taken as a possible loss: a failover to a replica
that lagged keeps the sentinel but may have lost the latest jobs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid

import redis
from django.conf import settings
from django.db import close_old_connections, connection

from orders import jobqueue, repair

logger = logging.getLogger("orders.scheduler")

RUN_ID_CHECK_SECONDS = 1.0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class SchedulerGuard:
    """The lease, the sentinel and the run id of one scheduler process (see the module docstring).

    `rebuilds`: this process rebuilds the schedule when it notices a loss (it writes the missing
    sentinel); a scheduler started with --no-reconcile only reads it and leaves the rebuild to another.
    """

    RETRY_AFTER_FAILED_POLL_SECONDS = 0.25

    def __init__(self, *, rebuilds: bool, lease_ms: int | None = None, interval: float = 0.0) -> None:
        self.host = settings.SCHEDULER_HOST_ID or socket.gethostname()
        self.pid = os.getpid()
        self.owner = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:12]}"
        # At least three poll intervals: a scheduler polling slowly must not lose its lease between polls.
        self.lease_ms = max(
            int(lease_ms if lease_ms is not None else settings.SCHEDULER_LEASE_MS), int(interval * 3000)
        )
        self._failing = False
        self.rebuilds = rebuilds
        self.holding = False
        self.sentinel: str | None = None
        self.run_id: str | None = None
        self._next_run_id_check = 0.0
        self._started = False
        self._rebuild_thread: threading.Thread | None = None
        self._rebuild_again = threading.Event()
        self._force_rebuild = False

    def stale_lease(self, holder: str | None) -> str:
        """`holder` if it is a lease this process may take at once: one of a scheduler of this host
        that is gone (or whose pid this process now has). Otherwise ""."""
        if not holder or holder == self.owner:
            return ""
        parts = holder.rsplit(":", 2)
        try:
            host, pid = parts[0], int(parts[1])
        except (IndexError, ValueError):
            return ""
        if host != self.host:
            return ""
        # This very pid: a previous life of this process (pid 1 of a restarted container), but only
        # at start; later it is another container of this host's network with the same pid.
        return holder if (pid == self.pid and not self._started) or not pid_alive(pid) else ""

    def poll(self) -> jobqueue.PollResult:
        """One poll: renew or take the lease (moving due jobs when held), check the sentinel, write
        the heartbeat; start a rebuild when Redis lost its data."""
        candidate = uuid.uuid4().hex if self.rebuilds else ""
        lead = float(settings.ORDER_HANDOFF_LEAD_SECONDS)
        result = jobqueue.poll_schedule(owner=self.owner, lease_ms=self.lease_ms, new_sentinel=candidate, lead=lead)
        if not result.held:
            stale = self.stale_lease(result.lease_holder)
            if stale:
                # The sentinel as the first call found it (that call wrote a missing one).
                result = jobqueue.poll_schedule(
                    owner=self.owner, lease_ms=self.lease_ms, new_sentinel=candidate, take_over_from=stale, lead=lead
                )._replace(sentinel=result.sentinel)
        self._started = True
        if self._failing:
            logger.warning("scheduler %s: Redis answers again", self.owner)
            self._failing = False
        if result.held != self.holding:
            self.holding = result.held
            if result.held:
                logger.info("scheduler %s holds the lease: it moves due jobs", self.owner)
            else:
                logger.warning("scheduler %s lost the lease to %s: standing by", self.owner, result.lease_holder)
        lost = False
        if result.sentinel is None:
            if candidate:
                lost = self.sentinel is not None or self.run_id is not None
                self.sentinel = candidate
                if lost:
                    logger.warning("Redis lost its data (the sentinel key is gone): rebuilding the schedule now")
        elif result.sentinel != self.sentinel:
            # Written by another scheduler that noticed a loss (and rebuilds), or read for the first time.
            self.sentinel = result.sentinel
        if self._check_run_id():
            # Another server: a reconcile lease it holds was copied from the old one and says
            # nothing about a reconcile of this one's data.
            self.rebuild_soon(force=True)
        elif lost or (result.sentinel is None and candidate):
            # Also on a first start against an empty Redis: the reconcile at start does the same and
            # the reconcile lease lets only one of them run.
            self.rebuild_soon()
        return result

    def log_failed_poll(self) -> None:
        """The traceback once per outage, not at every retry."""
        if self._failing:
            logger.debug("scheduler poll failed again", exc_info=True)
            return
        self._failing = True
        logger.exception("scheduler poll failed; retrying every %ss", self.RETRY_AFTER_FAILED_POLL_SECONDS)

    def _check_run_id(self) -> bool:
        now = time.monotonic()
        if now < self._next_run_id_check:
            return False
        self._next_run_id_check = now + RUN_ID_CHECK_SECONDS
        run_id = jobqueue.redis_run_id()
        changed = self.run_id is not None and run_id != self.run_id
        self.run_id = run_id
        if changed and self.rebuilds:
            logger.warning("Redis run id changed (restart or failover): checking the schedule now")
            return True
        return False

    def rebuild_soon(self, *, force: bool = False) -> None:
        """Reconcile in a thread now (or right after the one running): the poll loop keeps moving jobs."""
        if not self.rebuilds:
            return
        self._force_rebuild = self._force_rebuild or force
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            self._rebuild_again.set()
            return
        self._rebuild_thread = threading.Thread(target=self._rebuild, name="order-rebuild", daemon=True)
        self._rebuild_thread.start()

    def _rebuild(self) -> None:
        try:
            while True:
                self._rebuild_again.clear()
                force, self._force_rebuild = self._force_rebuild, False
                rebuild_schedule(force=force)
                if not self._rebuild_again.is_set():
                    return
        except Exception:
            # The periodic reconcile (RepairLoop) tries again within seconds.
            logger.exception("rebuild after a Redis loss failed")
        finally:
            connection.close()

    def release(self) -> None:
        """A clean exit: hand the lease over at once rather than after its expiry."""
        with contextlib.suppress(redis.RedisError):
            jobqueue.release_scheduler_lease(self.owner)
        self.holding = False


def reconcile_under_lease(*, force: bool = False) -> repair.ReconcileReport | None:
    """One reconcile pass, unless another scheduler holds the reconcile lease for this period
    (`force`: whatever the lease says). Shared by the periodic pass and the rebuild after a loss."""
    token = jobqueue.acquire_reconcile_lease(ttl=max(1, settings.RECONCILE_EVERY_SECONDS - 1), force=force)
    if token is None:
        return None
    try:
        close_old_connections()
        return repair.reconcile()
    except BaseException:
        jobqueue.release_reconcile_lease(token)
        raise


def rebuild_schedule(*, force: bool = False) -> repair.ReconcileReport | None:
    """Reconcile now, unless another reconcile started since the loss (it holds the reconcile lease,
    which a loss of data removes with everything else); `force`: whatever the lease says."""
    began = time.monotonic()
    report = reconcile_under_lease(force=force)
    if report is not None:
        logger.warning("rebuilt the schedule in %.2fs: %s", time.monotonic() - began, report)
    return report
