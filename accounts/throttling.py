"""Brute-force limits kept in the Django cache (Redis), shared by the API and the pages.

Fixed windows that start at the first counted attempt. Attempts are counted BEFORE the password is
checked and given back on success: concurrent guesses cannot slip past the limit between a check and
an increment, and a successful login does not use up the allowance.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

PREFIX = "throttle:"


class Throttled(Exception):
    """Too many attempts; retry_after is in whole seconds (at least 1)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many attempts; retry in {retry_after} s.")
        self.retry_after = retry_after


def client_ip(request: HttpRequest) -> str:
    """REMOTE_ADDR, or the address a trusted proxy put into X-Forwarded-For (TRUSTED_PROXY_COUNT hops)."""
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops > 0 and forwarded:
        # Each trusted proxy appends the address it saw; entries further left are client-controlled.
        addresses = [a.strip() for a in forwarded.split(",") if a.strip()]
        if len(addresses) >= hops:
            return addresses[-hops]
    return str(request.META.get("REMOTE_ADDR") or "unknown")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Counter:
    """A counter in the cache that lives `window` seconds from its first increment."""

    def __init__(self, name: str, *, limit: int, window: int) -> None:
        self.key = f"{PREFIX}{name}"
        self.until_key = f"{self.key}:until"
        self.limit = limit
        self.window = window

    def hit(self) -> int:
        for _ in range(3):
            now = time.time()
            # add() is a no-op when the window is already open, so its expiry stays where it was.
            cache.add(self.key, 0, timeout=self.window)
            cache.add(self.until_key, now + self.window, timeout=self.window)
            try:
                return int(cache.incr(self.key))
            except ValueError:
                continue  # the window expired between add() and incr(): open a new one
        raise RuntimeError(f"could not count {self.key}")

    def give_back(self) -> None:
        # ValueError: the window has already closed, nothing to give back.
        with contextlib.suppress(ValueError):
            cache.decr(self.key)

    def reset(self) -> None:
        cache.delete_many([self.key, self.until_key])

    def retry_after(self) -> int:
        until = cache.get(self.until_key)
        if until is None:
            return 1
        return max(1, math.ceil(float(until) - time.time()))


def _login_account_counter(email: str) -> Counter:
    return Counter(
        f"login:account:{_digest(email)}",
        limit=settings.LOGIN_FAILURES_PER_ACCOUNT,
        window=settings.LOGIN_FAILURE_WINDOW_SECONDS,
    )


def _login_ip_counter(ip: str) -> Counter:
    return Counter(
        f"login:ip:{_digest(ip)}", limit=settings.LOGIN_FAILURES_PER_IP, window=settings.LOGIN_FAILURE_WINDOW_SECONDS
    )


class LoginAttempt:
    """Counts one password check against the account (normalised email) and the client IP.

    Call begin() before checking the password: it raises Throttled once either limit is used up
    (wrong and right passwords alike, or the lock-out would just be a hint). Then succeeded() or
    nothing: a failure stays counted.
    """

    def __init__(self, *, email: str, ip: str | None) -> None:
        self.counters = [_login_account_counter(email)]
        if ip is not None:
            self.counters.append(_login_ip_counter(ip))

    def begin(self) -> None:
        over = [c for c in self.counters if c.hit() > c.limit]
        if over:
            raise Throttled(max(c.retry_after() for c in over))

    def succeeded(self) -> None:
        account, *ip = self.counters
        account.reset()
        for counter in ip:
            counter.give_back()


def signup_attempt(*, ip: str | None) -> None:
    """Counts every sign-up attempt from an IP (also rejected ones: they reveal which emails exist)."""
    if ip is None:
        return
    counter = Counter(f"signup:ip:{_digest(ip)}", limit=settings.SIGNUPS_PER_IP, window=settings.SIGNUP_WINDOW_SECONDS)
    if counter.hit() > counter.limit:
        raise Throttled(counter.retry_after())


def password_reset_attempt(*, email: str, ip: str | None) -> bool:
    """Counts a password-reset request. Raises Throttled when the IP has asked too often; returns
    False when this address has had its share of mails in the window (the caller then sends nothing
    but answers exactly as usual, so the limit tells nobody whether the address has an account)."""
    if ip is not None:
        by_ip = Counter(
            f"reset:ip:{_digest(ip)}",
            limit=settings.PASSWORD_RESETS_PER_IP,
            window=settings.PASSWORD_RESET_WINDOW_SECONDS,
        )
        if by_ip.hit() > by_ip.limit:
            raise Throttled(by_ip.retry_after())
    by_email = Counter(
        f"reset:email:{_digest(email)}",
        limit=settings.PASSWORD_RESETS_PER_EMAIL,
        window=settings.PASSWORD_RESET_WINDOW_SECONDS,
    )
    return by_email.hit() <= by_email.limit
