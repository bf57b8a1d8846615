"""The real processes the benchmark drives: the web server (scripts/web), `manage.py rqworker`,
`manage.py rqscheduler`.

Command lines come from the Procfile (the same settings `make run` uses), with its ${VAR:-default}
references expanded from the benchmark's environment, so a tuning change in the Procfile or in
scripts/web is what the next benchmark measures.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PROCFILE = ROOT / "Procfile"
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def procfile_commands(env: dict[str, str], path: Path = PROCFILE) -> dict[str, list[str]]:
    """Procfile lines as argument lists, variables expanded as a POSIX shell would."""

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        default = match.group(2) or ""
        return env.get(name) or default

    commands: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#") or ":" not in line:
            continue
        name, command = line.split(":", 1)
        argv = shlex.split(_VAR.sub(expand, command))
        # The venv's interpreter, whatever is first on PATH; a script of this tree by its full path.
        if argv[0] in ("python", "python3"):
            argv[0] = PYTHON
        elif argv[0] in ("gunicorn", "granian"):
            argv[:1] = [PYTHON, "-m", argv[0]]
        elif "/" in argv[0] and (ROOT / argv[0]).exists():
            argv[0] = str(ROOT / argv[0])
        commands[name.strip()] = argv
    return commands


def set_option(argv: list[str], option: str, value: str) -> list[str]:
    """Replace (or add) `option value` in an argument list."""
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


def _tree(pid: int) -> list[int]:
    """A process and all its live descendants (web worker processes, RQ work horses)."""
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
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def process_tree_rss_kib(pid: int) -> int:
    total = 0
    for member in _tree(pid):
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process tree, including children already reaped (the fork
    Worker's work horses end after every job and are counted through their parent)."""
    ticks = 0
    for member in _tree(pid):
        with suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(fields[i]) for i in (11, 12, 13, 14))
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class BenchStack:
    """Processes sharing one database, one Redis index and one log directory."""

    env: dict[str, str]
    work_dir: Path
    port: int = field(default_factory=free_port)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def commands(self) -> dict[str, list[str]]:
        return procfile_commands({**self.env, "PORT": str(self.port)})

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.work_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**self.env, **(extra_env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_web(self, *, app: str | None = None, settings_module: str | None = None) -> None:
        """The Procfile's web command (scripts/web); `app` and `settings_module` swap in another WSGI
        application (the API floor, bench/floor.py) under the very same server settings."""
        extra = {"PORT": str(self.port), **({"WEB_APP": app} if app else {})}
        if settings_module:
            extra["DJANGO_SETTINGS_MODULE"] = settings_module
        # scripts/web runs `granian`: the one of this interpreter's venv.
        extra["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{self.env.get('PATH', os.environ.get('PATH', ''))}"
        self._spawn("web", [*self.commands()["web"]], extra)
        self.wait_http("/healthz", accept=(200, 503))

    def web_command(self) -> str:
        """The running web server's command line as it was started (after the script's exec), without
        the interpreter: what the benchmark measured."""
        pid = self.pids("web")[0]
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        while argv and Path(argv[0]).name.startswith("python"):
            argv.pop(0)
        if argv:
            argv[0] = Path(argv[0]).name
        return " ".join(argv)

    def start_web_command(
        self,
        argv: list[str],
        *,
        app: str | None = None,
        settings_module: str | None = None,
    ) -> None:
        """start_web with another web command line (bench/ratio.py's alternatives, gunicorn's or granian's)."""
        if app is not None:
            argv = [app if arg in ("scheduler_site.wsgi", "scheduler_site.wsgi:application") else arg for arg in argv]
        self._spawn("web", argv, {"DJANGO_SETTINGS_MODULE": settings_module} if settings_module else None)
        self.wait_http("/healthz", accept=(200, 503))

    def start_workers(self, count: int, worker_class: str) -> None:
        from orders import jobqueue

        argv = set_option(self.commands()["worker"], "--worker-class", worker_class)
        for i in range(count):
            self._spawn(f"worker{i + 1}", [*argv, "--name", f"bench-{os.getpid()}-{self.port}-{i + 1}"])
        queue = jobqueue.queue()
        deadline = time.monotonic() + 60
        from rq import Worker

        while len(Worker.all(queue=queue)) < count:
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not register: {self.read_log('worker1')[-2000:]}")
            time.sleep(0.1)

    def start_scheduler(self, *, interval: float | None = None, reconcile: bool = True) -> None:
        from orders import jobqueue

        argv = self.commands()["scheduler"]
        if interval is not None:
            argv = set_option(argv, "--interval", str(interval))
        if not reconcile:
            argv.append("--no-reconcile")
        jobqueue.connection().delete(jobqueue.HEARTBEAT_KEY)
        self._spawn("scheduler", argv)
        deadline = time.monotonic() + 60
        while jobqueue.read_heartbeat() is None:
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"scheduler did not start: {self.read_log('scheduler')[-2000:]}")
            time.sleep(0.05)

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {self.read_log(name)[-2000:]}")

    def wait_http(self, path: str, accept: tuple[int, ...] = (200,), timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(self.base_url + path, timeout=2) as resp:  # noqa: S310 - http on loopback
                    if resp.status in accept:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code in accept:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{path} did not answer: {self.read_log('web')[-2000:]}")

    def pids(self, prefix: str) -> list[int]:
        return [p.pid for name, p in self.procs.items() if name.startswith(prefix) and p.poll() is None]

    def cpu_seconds(self, prefix: str) -> float:
        return sum(process_tree_cpu_seconds(pid) for pid in self.pids(prefix))

    def rss_mib(self, prefix: str) -> float:
        return sum(process_tree_rss_kib(pid) for pid in self.pids(prefix)) / 1024

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def stop_prefix(self, prefix: str) -> None:
        for name in [n for n in self.procs if n.startswith(prefix)]:
            self.stop(name)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def read_log(self, name: str) -> str:
        path = self.work_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
