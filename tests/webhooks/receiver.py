"""A real HTTP(S) receiver for webhook tests, on 127.0.0.1: asyncio streams, HTTP/1.1, one request per
connection. It runs in a thread of the test process (`Receiver`) or as its own process
(`python -m tests.webhooks.receiver --port-file F [--delay S] [--secret whsec_...]`) when the senders are
other processes or the test process must not share its CPU with it.

What it answers is chosen by the path, so one receiver serves every case:
  /ok                      200 "ok"
  /status/<code>           that status; ?retry_after=<v> and ?location=<v> add those headers
  /sleep/<seconds>         waits, then 200
  /big/<n>                 200 with n bytes of body (sent in 4 kB writes)
  /drip/<seconds>          200 at once, then the body one byte per <seconds>
  /flaky/<n>               503 for the first n requests of each webhook-id, then 200
Any path waits --delay seconds first. Each request is recorded (method, path, headers, body, SNI);
GET /_stats answers {"requests": N, "succeeded": {webhook-id: count of 2xx answers}, "verified": N,
"attempts": {webhook-id: [data.attempt of each request]}, "max_in_flight": N} where "verified" counts
requests whose signature checked out with --secret and "max_in_flight" is the most requests that were
being answered at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    sni: str | None
    at: float


@dataclass
class State:
    delay: float = 0.0
    secret: str | None = None
    requests: list[Received] = field(default_factory=list)
    succeeded: Counter[str] = field(default_factory=Counter)
    seen: Counter[str] = field(default_factory=Counter)
    # webhook-id -> the data.attempt of each request with that id, in arrival order.
    attempts: dict[str, list[int]] = field(default_factory=dict)
    verified: int = 0
    # With --effects-file: each request appends a "begin" line and the first 2xx answer of a webhook-id
    # an "end" line (a repeat of a processed id is acknowledged, not processed again), in the format of
    # tests/faults/executors.py, so that the fault suite's invariants see the receiver's effects.
    effects_file: Path | None = None
    processed: set[str] = field(default_factory=set)
    # Requests being answered right now, and the most there ever were at once.
    in_flight: int = 0
    max_in_flight: int = 0
    # Server names clients sent in TLS handshakes (SNI), in order.
    sni: list[str | None] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return method, target, headers, body


def _append(path: Path, record: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode())
    finally:
        os.close(fd)


def _response(status: int, body: bytes = b"", extra: dict[str, str] | None = None, length: int | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (extra or {}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


async def _handle(state: State, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await _read_request(reader)
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        writer.close()
        return
    assert request is not None
    method, target, headers, body = request
    sni = state.sni[-1] if state.sni else None
    url = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    parts = [p for p in url.path.split("/") if p]
    counted = False
    try:
        if url.path == "/_stats":
            stats = {
                "requests": len(state.requests),
                "succeeded": dict(state.succeeded),
                "verified": state.verified,
                "attempts": state.attempts,
                "max_in_flight": state.max_in_flight,
            }
            writer.write(_response(200, json.dumps(stats).encode(), {"Content-Type": "application/json"}))
            return
        state.requests.append(Received(method, url.path, headers, body, sni, time.time()))
        counted = True
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        webhook_id = headers.get("webhook-id", "")
        state.seen[webhook_id] += 1
        effect: dict[str, Any] = {}
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            data = json.loads(body)["data"]
            state.attempts.setdefault(webhook_id, []).append(int(data["attempt"]))
            effect = {"key": webhook_id, "order_id": data["order_id"], "occurrence": data["occurrence"]}
            effect.update(attempt=data["attempt"], pid=os.getpid())
        if state.effects_file is not None and effect:
            _append(state.effects_file, {**effect, "phase": "begin", "t": time.time()})
        if state.secret:
            with contextlib.suppress(Exception):
                Webhook(state.secret).verify(body, headers)
                state.verified += 1
        if state.delay:
            await asyncio.sleep(state.delay)
        status, payload, extra = 200, b"ok", {}
        kind = parts[0] if parts else "ok"
        if kind == "status":
            status = int(parts[1])
            payload = f"status {status}".encode()
            if "retry_after" in query:
                extra["Retry-After"] = query["retry_after"]
            if "location" in query:
                extra["Location"] = query["location"]
        elif kind == "sleep":
            await asyncio.sleep(float(parts[1]))
        elif kind == "big":
            size = int(parts[1])
            writer.write(_response(200, length=size))
            for start in range(0, size, 4096):
                writer.write(b"x" * min(4096, size - start))
                await writer.drain()
            state.succeeded[webhook_id] += 1
            return
        elif kind == "drip":
            writer.write(_response(200, length=10_000))
            await writer.drain()
            state.succeeded[webhook_id] += 1
            for _ in range(10_000):
                await asyncio.sleep(float(parts[1]))
                writer.write(b"x")
                await writer.drain()
            return
        elif kind == "flaky" and state.seen[webhook_id] <= int(parts[1]):
            status, payload = 503, b"try again"
        if 200 <= status < 300:
            state.succeeded[webhook_id] += 1
            if state.effects_file is not None and effect and webhook_id not in state.processed:
                state.processed.add(webhook_id)
                _append(state.effects_file, {**effect, "phase": "end", "t": time.time()})
        writer.write(_response(status, payload, extra))
        await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        if counted:
            state.in_flight -= 1
        with contextlib.suppress(Exception):
            writer.close()


def _remember_sni(ssl_context: ssl.SSLContext, state: State) -> None:
    def callback(_ssl_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        state.sni.append(server_name)

    ssl_context.sni_callback = callback


class Receiver:
    """The receiver in a background thread of this process. Use as a context manager."""

    def __init__(self, *, delay: float = 0.0, secret: str | None = None, ssl_context: ssl.SSLContext | None = None):
        self.state = State(delay=delay, secret=secret)
        self.ssl_context = ssl_context
        if ssl_context is not None:
            _remember_sni(ssl_context, self.state)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(
                lambda r, w: _handle(self.state, r, w), "127.0.0.1", 0, ssl=self.ssl_context, backlog=1024
            )
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def __enter__(self) -> Receiver:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: Any) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)

    def url(self, path: str = "/ok", host: str = "127.0.0.1") -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def requests(self) -> list[Received]:
        return list(self.state.requests)


async def _serve_forever(state: State, port_file: Path) -> None:
    server = await asyncio.start_server(lambda r, w: _handle(state, r, w), "127.0.0.1", 0, backlog=4096)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.rename(port_file)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port-file", type=Path, required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--secret", default=None)
    parser.add_argument("--effects-file", type=Path, default=None)
    args = parser.parse_args()
    state = State(delay=args.delay, secret=args.secret, effects_file=args.effects_file)
    asyncio.run(_serve_forever(state, args.port_file))


if __name__ == "__main__":
    main()


class ReceiverProcess:
    """The receiver as its own process (senders in other processes, or CPU not to be shared)."""

    def __init__(
        self, directory: Path, *, delay: float = 0.0, secret: str | None = None, effects_file: Path | None = None
    ) -> None:
        import subprocess
        import sys

        self.port_file = directory / f"receiver-{time.monotonic_ns()}.port"
        command = [sys.executable, "-m", "tests.webhooks.receiver", "--port-file", str(self.port_file)]
        command += ["--delay", str(delay)] + (["--secret", secret] if secret else [])
        command += ["--effects-file", str(effects_file)] if effects_file else []
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(command, cwd=root)
        deadline = time.monotonic() + 10
        while not self.port_file.exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.process.kill()
                raise RuntimeError("the receiver process did not start")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())

    def url(self, path: str = "/ok") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self) -> dict[str, Any]:
        import httpx

        result: dict[str, Any] = httpx.get(self.url("/_stats"), timeout=10).json()
        return result

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except Exception:
            self.process.kill()

    def __enter__(self) -> ReceiverProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
