"""Sending webhooks: signed, bounded, pinned to checked addresses, never following a redirect.

- Every send re-runs the URL policy (webhooks.targets) and connects only to the addresses it checked:
  the request URL carries the checked IP, while the Host header and the TLS SNI carry the name, and
  the certificate is verified against the name. Addresses are tried in the resolver's order until
  one accepts the connection. Keep-alive is off, so no connection made for one name is ever reused
  for another name on the same address; proxies from the environment are ignored (trust_env=False).
- Limits: a connect timeout per address and a total timeout per delivery (WEBHOOK_TIMEOUT_SECONDS,
  which covers resolution, connecting, sending and the answer); at most the first EXCERPT_BYTES of the
  response body are read, then the connection is closed.
- Classification: 2xx succeeded; timeout, connection error, 408, 429 and 5xx retryable (Retry-After,
  capped, is passed on); anything else failed for good (a 3xx is not followed: the receiver's
  configuration is wrong, and following it would let the receiver point us anywhere).
- A batch is sent concurrently on one event loop (httpx.AsyncClient), at most WEBHOOK_CONCURRENCY at
  a time, each with its own timeout: one slow endpoint delays nobody else's delivery.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from webhooks.messages import render_body
from webhooks.signing import signature_headers
from webhooks.targets import (
    CheckedTarget,
    ParsedTarget,
    Resolver,
    TargetRefused,
    TargetUnresolvable,
    configured_resolver,
    parse_target_url,
    resolve_target,
)

logger = logging.getLogger(__name__)

EXCERPT_BYTES = 1024
USER_AGENT = "order-scheduler-webhooks/1.0"


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    RETRYABLE = "retryable"
    FAILED = "failed"


@dataclass(frozen=True)
class Delivery:
    """One signed POST to make. The body is rendered (and signed) when it is sent."""

    url: str
    msg_id: str
    event_type: str
    data: dict[str, Any]
    secrets: tuple[str, ...]


@dataclass
class DeliveryResult:
    outcome: Outcome
    status_code: int | None = None
    latency_ms: int | None = None
    # The first EXCERPT_BYTES of the response body as text (invalid UTF-8 replaced): data to show
    # escaped, never markup to render.
    response_excerpt: str = ""
    error: str = ""
    retry_after_seconds: float | None = None
    # The address the request went to ("" when no connection was made).
    address: str = ""

    @property
    def succeeded(self) -> bool:
        return self.outcome == Outcome.SUCCEEDED

    def as_record(self) -> dict[str, Any]:
        """The one JSON shape of a delivery's result (attempt history, API, log)."""
        return {
            "outcome": str(self.outcome),
            "status_code": self.status_code,
            "latency_ms": self.latency_ms,
            "response_excerpt": self.response_excerpt,
            "error": self.error,
            "retry_after_seconds": self.retry_after_seconds,
            "address": self.address,
        }


@dataclass
class _Progress:
    """What one delivery had got when its total timeout struck."""

    status_code: int | None = None
    retry_after: str | None = None
    location: str | None = None
    excerpt: bytearray = field(default_factory=bytearray)
    address: str = ""


@dataclass(frozen=True)
class SendOptions:
    timeout: float
    connect_timeout: float
    concurrency: int
    retry_after_cap: float
    resolver: Resolver
    ssl_context: ssl.SSLContext

    @classmethod
    def from_settings(cls, **overrides: Any) -> SendOptions:
        total = float(getattr(settings, "WEBHOOK_TIMEOUT_SECONDS", 10.0))
        values: dict[str, Any] = {
            "timeout": total,
            "connect_timeout": float(getattr(settings, "WEBHOOK_CONNECT_TIMEOUT_SECONDS", None) or total),
            "concurrency": int(getattr(settings, "WEBHOOK_CONCURRENCY", 100)),
            "retry_after_cap": float(getattr(settings, "WEBHOOK_RETRY_AFTER_MAX_SECONDS", 300.0)),
            "resolver": configured_resolver(),
            "ssl_context": default_ssl_context(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@functools.cache
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context per process (httpx's: certifi's CA bundle), not one per client: building
    one loads the bundle, milliseconds each."""
    return httpx.create_ssl_context(trust_env=False)


def classify_status(status_code: int) -> Outcome:
    if 200 <= status_code < 300:
        return Outcome.SUCCEEDED
    if status_code in (408, 429) or 500 <= status_code < 600:
        return Outcome.RETRYABLE
    return Outcome.FAILED


def parse_retry_after(value: str | None, *, now: datetime, cap: float) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), between 0 and `cap`; None if absent or
    unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(text) if len(text) < 12 else cap
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


def send_webhooks(deliveries: Sequence[Delivery], **overrides: Any) -> list[DeliveryResult]:
    """Send these deliveries concurrently; one result per delivery, in order. Never raises for a
    delivery's failure. `overrides` replace SendOptions fields (tests: resolver, ssl_context, timeout)."""
    if not deliveries:
        return []
    options = SendOptions.from_settings(**overrides)
    return asyncio.run(_send_all(list(deliveries), options))


def send_webhook(delivery: Delivery, **overrides: Any) -> DeliveryResult:
    return send_webhooks([delivery], **overrides)[0]


async def _send_all(deliveries: list[Delivery], options: SendOptions) -> list[DeliveryResult]:
    limit = asyncio.Semaphore(max(1, options.concurrency))
    client = httpx.AsyncClient(
        verify=options.ssl_context,
        trust_env=False,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
        headers={"user-agent": USER_AGENT},
    )

    async def one(delivery: Delivery) -> DeliveryResult:
        async with limit:  # the timeout starts once the delivery's turn has come
            try:
                return await _send_one(client, delivery, options)
            except Exception as exc:
                # A defect here must not drop the other deliveries of the batch; a retry is the safe side.
                logger.exception("webhook delivery %s failed unexpectedly", delivery.msg_id)
                return DeliveryResult(Outcome.RETRYABLE, error=f"InternalError: {type(exc).__name__}")

    async with client:
        return list(await asyncio.gather(*(one(d) for d in deliveries)))


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


async def _send_one(client: httpx.AsyncClient, delivery: Delivery, options: SendOptions) -> DeliveryResult:
    started = time.monotonic()
    progress = _Progress()
    try:
        async with asyncio.timeout(options.timeout):
            return await _attempt(client, delivery, options, started, progress)
    except TimeoutError:
        if progress.status_code is not None:
            # The answer's status came in time and only the body excerpt was cut short: the status is
            # the receiver's verdict.
            return _result_from(progress, options, started)
        return DeliveryResult(
            Outcome.RETRYABLE,
            latency_ms=_elapsed_ms(started),
            error=f"Timeout: no answer within {options.timeout:g} s",
            address=progress.address,
        )


async def _check(delivery: Delivery, options: SendOptions) -> CheckedTarget:
    parsed: ParsedTarget = parse_target_url(delivery.url)
    if parsed.literal is not None:
        return resolve_target(parsed, resolver=options.resolver)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(resolve_target, parsed, resolver=options.resolver))


async def _attempt(
    client: httpx.AsyncClient, delivery: Delivery, options: SendOptions, started: float, progress: _Progress
) -> DeliveryResult:
    try:
        checked = await _check(delivery, options)
    except TargetUnresolvable as exc:
        return DeliveryResult(Outcome.RETRYABLE, latency_ms=_elapsed_ms(started), error=f"DNS: {exc}")
    except TargetRefused as exc:
        # Checked before any connection: nothing was sent.
        return DeliveryResult(Outcome.FAILED, latency_ms=_elapsed_ms(started), error=f"Refused: {exc}")
    parsed = checked.parsed
    now = timezone.now()
    body = render_body(event_type=delivery.event_type, data=delivery.data, timestamp=now).encode("ascii")
    headers = {
        **signature_headers(msg_id=delivery.msg_id, body=body.decode("ascii"), secrets=delivery.secrets, timestamp=now),
        "content-type": "application/json",
        "accept-encoding": "identity",
        "host": parsed.host_header,
    }
    # SNI (and so certificate verification) by name; a literal IP host is verified as the IP.
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" and parsed.literal is None else {}
    failures: list[str] = []
    for address in checked.addresses:
        remaining = max(options.timeout - (time.monotonic() - started), 0.001)
        timeout = httpx.Timeout(remaining, connect=min(options.connect_timeout, remaining))
        request = client.build_request(
            "POST", checked.url_for(address), content=body, headers=headers, timeout=timeout, extensions=extensions
        )
        progress.address = str(address)
        try:
            response = await client.send(request, stream=True, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            failures.append(f"{address}: {type(exc).__name__}: {exc}"[:300])
            continue  # nothing was sent: the next address may answer
        except httpx.TimeoutException as exc:
            return DeliveryResult(
                Outcome.RETRYABLE, latency_ms=_elapsed_ms(started), error=f"Timeout: {exc}"[:500], address=str(address)
            )
        except httpx.TransportError as exc:
            return DeliveryResult(
                Outcome.RETRYABLE,
                latency_ms=_elapsed_ms(started),
                error=f"ConnectionError: {type(exc).__name__}: {exc}"[:500],
                address=str(address),
            )
        try:
            progress.status_code = response.status_code
            progress.retry_after = response.headers.get("retry-after")
            progress.location = response.headers.get("location")
            async for chunk in response.aiter_raw():
                progress.excerpt += chunk[: EXCERPT_BYTES - len(progress.excerpt)]
                if len(progress.excerpt) >= EXCERPT_BYTES:
                    break
        except httpx.TransportError:
            pass  # the status is in; a body cut short changes nothing about it
        finally:
            await response.aclose()
        return _result_from(progress, options, started)
    return DeliveryResult(
        Outcome.RETRYABLE,
        latency_ms=_elapsed_ms(started),
        error="ConnectError: no address accepted the connection (" + "; ".join(failures) + ")",
    )


def _result_from(progress: _Progress, options: SendOptions, started: float) -> DeliveryResult:
    status = progress.status_code
    assert status is not None
    outcome = classify_status(status)
    excerpt = bytes(progress.excerpt).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    result = DeliveryResult(
        outcome, status_code=status, latency_ms=_elapsed_ms(started), response_excerpt=excerpt, address=progress.address
    )
    if outcome == Outcome.RETRYABLE:
        result.retry_after_seconds = parse_retry_after(
            progress.retry_after, now=timezone.now(), cap=options.retry_after_cap
        )
        result.error = f"HTTP {status}: the receiver asked to try again later"
    elif outcome == Outcome.FAILED:
        if 300 <= status < 400:
            result.error = f"HTTP {status}: redirects are not followed (Location: {(progress.location or '')[:200]})"
        else:
            result.error = f"HTTP {status}: the receiver refused the delivery"
    return result
