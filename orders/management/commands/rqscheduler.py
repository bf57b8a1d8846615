"""`manage.py rqscheduler`: rq-scheduler's poll loop, with what the stock command lacks.

- due times to the microsecond: jobs are scored with their exact due instant (orders/jobqueue.py), and
  the loop sleeps until the earliest one (or until a placement announces an earlier one), and moves
  it ORDER_HANDOFF_LEAD_SECONDS before its instant (the early hand-off: the worker waits for the
  instant and takes the run then, never before it); rq-scheduler's own loop compares whole seconds;
- a fractional --interval for the regular poll that catches what no placement announced, aligned
  to the wall clock just after each fraction;
- reconcile at start and every RECONCILE_EVERY_SECONDS, and a cheap check for abandoned runs every
  ABANDONED_CHECK_EVERY_SECONDS, so a Redis that lost its data or a killed worker is repaired here;
- a heartbeat for /healthz;
- an owner-checked lease and a Redis-loss sentinel, checked on every poll in the same round trip as
  the move (orders/scheduler_guard.py): several schedulers may run, one moves due jobs and the
  others take over within 2 s of its death; a loss of Redis data is rebuilt at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import signal
import threading
import time
from types import FrameType
from typing import Any

import redis
from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection

from orders import jobqueue, repair
from orders.scheduler_guard import SchedulerGuard, reconcile_under_lease

logger = logging.getLogger("orders.scheduler")


class Command(BaseCommand):
    help = "Run the order scheduler: moves due jobs from rq-scheduler's schedule into the queue."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=float,
            default=settings.SCHEDULER_POLL_INTERVAL_SECONDS,
            help="Seconds between polls (fractions allowed; default %(default)s).",
        )
        parser.add_argument("--burst", action="store_true", help="Poll once and exit.")
        parser.add_argument("--no-reconcile", action="store_true", help="Do not run reconcile in this process.")
        # Accepted for compatibility with django-rq's command.
        parser.add_argument("--queue", default=None, help=argparse.SUPPRESS)
        parser.add_argument("--pid", default=None, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        interval = max(0.05, float(options["interval"]))
        reconcile_enabled = not options["no_reconcile"]
        stopping = False

        def stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)

        # rq-scheduler's registration only (its lock is not used: the guard's lease decides who moves).
        sched = jobqueue.scheduler(interval=max(1, math.ceil(interval)))
        guard = SchedulerGuard(rebuilds=reconcile_enabled and not options["burst"], interval=interval)
        db_name = settings.DATABASES["default"]["NAME"]
        self.stdout.write(
            f"order scheduler: polling every {interval}s; database {settings.DATABASES['default']['ENGINE']} "
            f"{db_name}; redis {'embedded ' if settings.REDIS_EMBEDDED else ''}{settings.REDIS_URL}"
        )
        # Redis may not be up yet (or be restarting): wait for it instead of exiting.
        while not stopping:
            try:
                sched.register_birth()
                break
            except redis.RedisError:
                logger.warning("Redis is unreachable; the scheduler retries in 1 s")
                time.sleep(1)
        repair_stop = threading.Event()
        repair_loop = RepairLoop(repair_stop)
        if reconcile_enabled and not options["burst"]:
            repair_loop.start()
        try:
            while not stopping:
                try:
                    poll = guard.poll()
                except Exception:  # noqa: BLE001 - logged by log_failed_poll (once per outage)
                    guard.log_failed_poll()
                    # Soon: the first poll after Redis comes back empty starts the rebuild.
                    time.sleep(guard.RETRY_AFTER_FAILED_POLL_SECONDS)
                    continue
                if options["burst"]:
                    if reconcile_enabled:
                        repair_loop.repair_once(force=True)
                    break
                # Wake at the earliest due job, or just after the next multiple of the interval on the
                # wall clock (the poll that catches what no placement announced), whichever is first.
                # A standby that did not get the lease only polls: the active scheduler moves due jobs.
                if poll.more_due:
                    continue
                wait = interval - (time.time() % interval) + 0.005
                if poll.held and poll.next_due_in is not None:
                    # The poll counted the early hand-off in: an occurrence moves its lead ahead.
                    wait = min(wait, poll.next_due_in)
                if not poll.held:
                    # A standby must not block on the wake-up list: it would take the signal meant
                    # for the scheduler that moves jobs.
                    time.sleep(wait)
                    continue
                try:
                    jobqueue.wait_for_due_or_wake(wait)
                except redis.RedisError:
                    time.sleep(max(0.0, wait))
        finally:
            repair_stop.set()
            guard.release()
            with contextlib.suppress(Exception):  # Redis may be the reason we stop
                sched.register_death()


class RepairLoop(threading.Thread):
    """Reconcile (at start, then every RECONCILE_EVERY_SECONDS) and the abandoned-run check (every
    ABANDONED_CHECK_EVERY_SECONDS), in a thread of their own: a long repair (tens of seconds for
    100,000 orders) never holds up the poll loop that moves due jobs.

    Several schedulers may run; a Redis lease lets only one of them reconcile per period, and the
    lease is given back when a pass fails, so another pass (here or elsewhere) retries in seconds.
    """

    RETRY_AFTER_FAILURE_SECONDS = 5.0

    def __init__(self, stop_event: threading.Event) -> None:
        super().__init__(name="order-repair", daemon=True)
        self.stop_event = stop_event

    def repair_once(self, *, force: bool = False) -> None:
        report = reconcile_under_lease(force=force)
        if report is not None:  # None: another scheduler reconciles this period
            logger.info("reconcile: %s", report)

    def run(self) -> None:
        next_reconcile = 0.0
        next_abandoned_check = time.monotonic() + settings.ABANDONED_CHECK_EVERY_SECONDS
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                try:
                    if now >= next_reconcile:
                        self.repair_once()
                        next_reconcile = now + settings.RECONCILE_EVERY_SECONDS
                        next_abandoned_check = now + settings.ABANDONED_CHECK_EVERY_SECONDS
                    elif now >= next_abandoned_check:
                        close_old_connections()
                        recovered = repair.recover_abandoned()
                        if recovered:
                            logger.warning("recovered %s abandoned runs", recovered)
                        next_abandoned_check = now + settings.ABANDONED_CHECK_EVERY_SECONDS
                except Exception:
                    logger.exception("repair pass failed; retrying in %ss", self.RETRY_AFTER_FAILURE_SECONDS)
                    close_old_connections()
                    if now >= next_reconcile:
                        next_reconcile = now + self.RETRY_AFTER_FAILURE_SECONDS
                    next_abandoned_check = now + self.RETRY_AFTER_FAILURE_SECONDS
                self.stop_event.wait(0.5)
        finally:
            connection.close()
