"""Fault-injection tools: a private redis-server the test may kill, flush and restart, a TCP proxy
in front of MariaDB that the test can cut, a tiny JSON API client, and recovery-time bookkeeping.

The shared services (MariaDB on 3306, Redis on 6379) are never touched: every outage is simulated
on something this test process started.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings

from orders import jobqueue
from tests.processes import Stack, free_port

REDIS_SERVER = "/usr/bin/redis-server"


def needs_mariadb() -> pytest.MarkDecorator:
    """For scenarios that cut the database connection with a TCP proxy: the `mysql` marker, which
    tests/conftest.py turns into a skip on the embedded SQLite default (it has no connection to cut)."""
    return pytest.mark.mysql(reason="cuts the TCP connection to the database with a proxy; SQLite has none")


def wait_for(predicate: Callable[[], object], timeout: float, step: float = 0.2, what: str = "condition") -> float:
    """Poll until predicate() is truthy; return the seconds it took."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what} not reached within {timeout:.0f}s")
        time.sleep(step)


class RedisServer:
    """A redis-server of this test only, on a free port, without persistence unless asked."""

    def __init__(self, directory: Path, *, appendonly: bool = False) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5, socket_connect_timeout=2)

    def start(self) -> None:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, start_new_session=True)
        wait_for(self._ping, timeout=10, step=0.05, what="private redis-server start")

    def _ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def enable_persistence(self) -> None:
        """Turn on the append-only file now, so that a stop with SIGTERM and a start keep the data
        (a Redis that comes back with its old, possibly stale, jobs)."""
        client = self.client()
        client.config_set("appendonly", "yes")
        self.appendonly = True

        def rewritten() -> bool:
            info = client.info("persistence")
            return bool(info["aof_enabled"]) and not info["aof_rewrite_in_progress"]

        wait_for(rewritten, timeout=10, step=0.05, what="append-only file written")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target port; cut() behaves like the server going away
    (open connections reset, new ones refused) and restore() like it coming back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._marker: bytes | None = None
        self._tripped = threading.Event()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        self._thread.start()

    def _accept_loop(self, listener: socket.socket) -> None:
        # A short timeout rather than a blocking accept(): closing a socket does not wake a thread
        # blocked in accept() on it, and that thread would keep the port bound after cut().
        listener.settimeout(0.1)
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # listener closed by cut()/close()
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def lose_reply_to(self, marker: bytes) -> threading.Event:
        """Arm a trap: the next client packet containing `marker` (compared in upper case: client
        libraries differ in the case of the statements they send) reaches the server; once the
        server's answer has arrived, the proxy is cut, resetting both sides before the answer is
        relayed. The client cannot tell what the server did; the server did it (for a COMMIT: the
        transaction is durable, its acknowledgement lost). The event returned is set once the trap
        has gone off."""
        self._tripped.clear()
        self._marker = marker
        return self._tripped

    def _claim(self, data: bytes) -> bool:
        with self._lock:
            if self._marker is None or self._marker.upper() not in data.upper():
                return False
            self._marker = None
            return True

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        # a is the client, b the server.
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    (b if src is a else a).sendall(data)
                    if src is a and self._claim(data):
                        # Wait for the server's answer (so it has acted), then drop it with everything.
                        select.select([b], [], [], 5.0)
                        self.cut()
                        self._tripped.set()
                        return
        except (OSError, ValueError):
            return
        finally:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.difference_update((a, b))

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for s in conns:
            with contextlib.suppress(OSError):
                # RST rather than FIN, like a server that vanished.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()

    def restore(self) -> None:
        wait_for(self._try_start, timeout=10, step=0.1, what=f"proxy port {self.port} free again")

    def _try_start(self) -> bool:
        try:
            self.start()
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.cut()


class Api:
    """A minimal JSON client for the real web process (urllib: one connection per request)."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        code, answer, _ = self.exchange(method, path, body)
        return code, answer

    def exchange(
        self, method: str, path: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, Message]:
        """call() that also sends extra headers and returns the response's headers, looked up without
        regard to case as HTTP means them (granian sends every header name in lower case)."""
        request = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode() if body is not None else None,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=20) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None, resp.headers
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                return exc.code, json.loads(raw) if raw else None, exc.headers
            except ValueError:
                return exc.code, raw.decode(errors="replace")[:500], exc.headers


def record_measurement(scenario: str, **figures: Any) -> None:
    """Append measured figures (recovery times, counts) for docs/RELIABILITY.md and the run summary."""
    path = Path(settings.LOG_DIR) / "fault-measurements.jsonl"
    with path.open("a") as fh:
        fh.write(json.dumps({"scenario": scenario, "at": time.time(), **figures}) + "\n")
    print(f"[faults] {scenario}: {figures}")


def wait_until_up(*, workers: int, scheduler: bool = True, timeout: float = 30) -> None:
    """Wait until `workers` rq workers are registered and the scheduler has written its heartbeat,
    so that a fault injected next hits running processes rather than ones still starting."""

    def up() -> bool:
        conn = jobqueue.connection()
        registered = int(conn.scard("rq:workers")) >= workers
        return registered and (not scheduler or bool(conn.exists(jobqueue.HEARTBEAT_KEY)))

    wait_for(up, timeout=timeout, step=0.1, what=f"{workers} workers and the scheduler up")


class Supervisor:
    """Plays the process supervisor (systemd Restart=, docker compose restart: unless-stopped):
    a worker or scheduler that exited is started again. rq's worker exits when Redis is
    unreachable at start, or vanishes while it records the end of a job; the fault scenarios that
    take Redis away need this, exactly as production does."""

    def __init__(self, stack: Stack, names: list[str]) -> None:
        self.stack = stack
        self.names = names
        self.restarts: list[str] = []

    def check(self) -> None:
        for name in self.names:
            if self.stack.procs[name].poll() is None:
                continue
            self.restarts.append(name)
            if name.startswith("scheduler"):
                self.stack.start_scheduler(name)
            else:
                self.stack.start_worker(name)

    def watching(self, predicate: Callable[[], object]) -> Callable[[], object]:
        """The predicate, with a supervision round before each evaluation (for wait_for)."""

        def supervised() -> object:
            self.check()
            return predicate()

        return supervised


def descendants(pid: int) -> list[int]:
    """Child processes of pid, recursively (from /proc: rq's work horse runs in its own session,
    so killing the worker's process group does not reach it)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def kill_tree(pid: int) -> list[int]:
    """SIGKILL a process and all its descendants at once (a worker and its work horse)."""
    victims = [pid, *descendants(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    return victims


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
