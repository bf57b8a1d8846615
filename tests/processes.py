"""Start the real processes (scripts/web, `manage.py rqworker`, `manage.py rqscheduler`) against the
test database and Redis, for end-to-end, browser and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WEB_COMMAND = ROOT / "scripts" / "web"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_database_url() -> str:
    """The URL of the database this test session created, for child processes."""
    sd = connection.settings_dict
    if sd["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{sd['NAME']}"
    user, password = sd.get("USER") or "root", sd.get("PASSWORD") or ""
    auth = f"{user}:{password}@" if password else f"{user}@"
    return f"mysql://{auth}{sd.get('HOST') or '127.0.0.1'}:{sd.get('PORT') or 3306}/{sd['NAME']}"


def debug_is_on(env: dict[str, str]) -> bool:
    """DEBUG as settings.py reads it from this environment (django-environ's bool)."""
    return env.get("DEBUG", "").strip().lower() in ("true", "on", "ok", "y", "yes", "1")


def for_production_like(env: dict[str, str]) -> dict[str, str]:
    """The environment of a process started with DEBUG off, as production runs: without the cheap
    password hasher the suite sets for the processes it starts (tests/conftest.py), which settings.py
    refuses with DEBUG off."""
    if debug_is_on(env):
        return env
    return {k: v for k, v in env.items() if k != "FAST_PASSWORD_HASHER"}


class Stack:
    """A set of real processes sharing this test's database, Redis and log directory."""

    def __init__(self, tmp_path: Path, **env_overrides: Any) -> None:
        self.tmp_path = tmp_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.env = os.environ.copy()
        self.env.update(
            {
                "DJANGO_SETTINGS_MODULE": "scheduler_site.settings",
                "DATABASE_URL": test_database_url(),
                "REDIS_URL": settings.REDIS_URL,
                "LOG_DIR": str(settings.LOG_DIR),
                "DEBUG": "true",
                "PYTHONUNBUFFERED": "1",
                "CONN_MAX_AGE": "0",
            }
        )
        # The embedded Redis URL is a unix socket of this session's var dir; pass it through as is.
        self.env.update({k: str(v) for k, v in env_overrides.items()})
        self.env = for_production_like(self.env)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._counter = 0

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.tmp_path / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=for_production_like({**self.env, **(env or {})}),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def start_web(self, workers: int = 2) -> None:
        # The production command itself (scripts/web, as the Procfile and the image run it), so the
        # tests test what is deployed; granian from this interpreter's venv.
        logged = len(self.read_log("web"))  # a restart appends to the same log
        self._spawn(
            "web",
            [str(WEB_COMMAND)],
            env={
                "PORT": str(self.port),
                "WEB_CONCURRENCY": str(workers),
                "PATH": f"{Path(PYTHON).parent}{os.pathsep}{self.env.get('PATH', '')}",
            },
        )
        self.wait_http("/healthz", accept=(200, 503))
        # /healthz answers once one process is up; wait for the others too, so a test sees the whole
        # server, and a stop right after the start does not catch a process still importing Django
        # (granian then waits for its kill timeout, 10 s, before it kills that process).
        deadline = time.monotonic() + 30
        while self.read_log("web")[logged:].count("Started worker-") < workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{workers} web processes did not start:\n{self.read_log('web')[-3000:]}")
            time.sleep(0.1)

    def start_worker(self, name: str | None = None, worker_class: str = "rq.worker.SimpleWorker") -> str:
        self._counter += 1
        name = name or f"worker{self._counter}"
        self._spawn(
            name,
            [
                PYTHON,
                "manage.py",
                "rqworker",
                settings.ORDER_QUEUE,
                "--worker-class",
                worker_class,
                # Unique per start, as rq's default is: a worker stopped while Redis was down leaves
                # its registration behind (persisted), and a restart under the same name is refused.
                "--name",
                f"{name}-{uuid.uuid4().hex[:8]}",
            ],
        )
        return name

    def start_scheduler(self, name: str = "scheduler", interval: float = 0.2, env: dict[str, str] | None = None) -> str:
        self._spawn(name, [PYTHON, "manage.py", "rqscheduler", "--interval", str(interval)], env=env)
        return name

    def wait_http(self, path: str, accept: tuple[int, ...] = (200,), timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as resp:
                    if resp.status in accept:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code in accept:
                    return
                last = exc
            except OSError as exc:
                last = exc
            time.sleep(0.2)
        raise RuntimeError(f"{path} did not answer: {last}; web log:\n{self.read_log('web')[-3000:]}")

    def send_signal(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, sig)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        proc = self.procs.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def read_log(self, name: str) -> str:
        path = self.tmp_path / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def running_stack(
    tmp_path: Path, *, workers: int = 1, web: bool = True, scheduler: bool = True, **env: Any
) -> Iterator[Stack]:
    stack = Stack(tmp_path, **env)
    try:
        if web:
            stack.start_web()
        for _ in range(workers):
            stack.start_worker()
        if scheduler:
            stack.start_scheduler()
        yield stack
    finally:
        stack.stop_all()
