"""`make run` as a newcomer meets it: no configuration, then Ctrl-C."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from tests.processes import ROOT, free_port

pytestmark = pytest.mark.e2e


def _read_until(proc: subprocess.Popen[bytes], needle: str, timeout: float) -> str:
    """Everything proc printed until a line containing needle (or the timeout, or its exit)."""
    assert proc.stdout is not None
    out = ""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while needle not in out and time.monotonic() < deadline:
        if not selector.select(timeout=1):
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk.decode(errors="replace")
    return out


def _redis_answers(sock: Path) -> bool:
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=2).ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False


def _live_members(pgid: int) -> list[str]:
    """The processes of group pgid that still run (a zombie has exited; it only waits to be reaped)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            live.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
    return live


def test_make_run_ends_its_start_up_with_the_url_and_next_steps_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    var = tmp_path / "var"
    # A fresh clone: no DATABASE_URL / REDIS_URL, and not a test session's child either.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "PYTEST_VERSION")}
    env.update(VAR_DIR=str(var), LOG_DIR=str(tmp_path / "logs"), STATIC_ROOT=str(tmp_path / "static"))
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"PORT={port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = _read_until(proc, "createsuperuser", timeout=180)
        base = f"http://127.0.0.1:{port}"
        assert f"Open {base}/" in out, out[-3000:]
        assert f"Sign up at {base}/signup" in out
        assert ".venv/bin/python manage.py createsuperuser" in out
        # It comes at the end of the start-up: after the web server, the worker and the scheduler.
        greeting = out.index(f"Open {base}/")
        for process in ("web.1", "worker.1", "scheduler.1"):
            assert process in out[:greeting], out[-3000:]
        assert _redis_answers(var / "redis" / "redis.sock")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends to the terminal's foreground group
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert proc.stdout is not None
    shutdown = proc.stdout.read().decode(errors="replace")
    deadline = time.monotonic() + 10
    while _live_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _live_members(proc.pid), f"still running after Ctrl-C: {_live_members(proc.pid)}\n{shutdown}"
    assert "stopped the embedded redis-server" in shutdown, shutdown
    assert not _redis_answers(var / "redis" / "redis.sock"), f"the embedded redis-server outlived it:\n{shutdown}"


def test_the_procfile_the_image_and_compose_all_start_the_one_web_command() -> None:
    """The server chosen by measurement (scripts/web) is what every way of deploying runs, and what
    the tests start (tests/processes.py): none of them keeps a web command line of its own."""
    import json

    import yaml

    from tests.processes import WEB_COMMAND

    script = ROOT / "scripts" / "web"
    assert script == WEB_COMMAND and os.access(script, os.X_OK)
    assert "exec granian --interface wsgi" in script.read_text()
    lines = (ROOT / "Procfile").read_text().splitlines()
    procfile = dict(line.split(":", 1) for line in lines if ":" in line and not line.startswith("#"))
    assert procfile["web"].strip() == "scripts/web"
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    [cmd] = [line for line in dockerfile if line.startswith("CMD ")]
    assert json.loads(cmd.removeprefix("CMD ")) == ["/app/scripts/web"]
    assert "ENV WEB_HOST=0.0.0.0" in dockerfile  # in a container it listens on every interface
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["web"]["command"] == ["/app/scripts/web"]
