"""A transaction that MariaDB/MySQL picked as a deadlock's victim is run again.

InnoDB detects a cycle of lock waits and rolls back one of its transactions whole ("Deadlock
found when trying to get lock; try restarting transaction"), and MySQL's manual asks applications
to do exactly that. Cycles are rare here, since every path takes its row locks in the same order,
but foreign-key checks take shared locks that no path chooses: a worker inserting an order's
notification holds a shared lock on the owner's row while a create by the same owner waits to lock
that row for the active-order cap, and a third transaction can close the circle. Without a retry
that owner would see a 503 for a request that would succeed a few milliseconds later.

Only the outermost transaction can be run again (InnoDB rolled back all of it, savepoints
included), so inside a caller's atomic block the error passes up to that caller.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, transaction

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# MySQL/MariaDB error codes: ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT (the latter rolls back only
# the statement by default, but the services treat a transaction as all or nothing).
RETRIED_ERRORS = frozenset({1213, 1205})
ATTEMPTS = 3


def is_retryable(exc: OperationalError) -> bool:
    return bool(exc.args) and exc.args[0] in RETRIED_ERRORS


def atomic_with_retry(func: Callable[P, R]) -> Callable[P, R]:
    """Run func in a transaction (transaction.atomic), again up to ATTEMPTS times in all when
    the database rolled it back to break a deadlock or a lock wait ran out."""
    return with_retry(transaction.atomic(func))


def with_retry(func: Callable[P, R]) -> Callable[P, R]:
    """Run func again, up to ATTEMPTS times in all, when the database refused it with a deadlock or a
    lock wait that ran out. func is a transaction of its own: atomic, or one statement in autocommit
    (a create's INSERT). Inside a caller's atomic block it runs once (see the module docstring)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if transaction.get_connection().in_atomic_block:
            return func(*args, **kwargs)
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return func(*args, **kwargs)
            except OperationalError as exc:
                if not is_retryable(exc) or attempt == ATTEMPTS:
                    raise
                logger.info("%s: %s; running the transaction again (attempt %d)", func.__qualname__, exc, attempt + 1)
                # A short random pause, so that the transactions of the cycle do not meet again at once.
                time.sleep(random.uniform(0.002, 0.02) * attempt)
        raise AssertionError("unreachable")

    return wrapper
