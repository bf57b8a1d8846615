"""`python -m bench.ratio`: the API against its floor, in one run, under one server (issue 17).

For each server configuration (--servers), each of --reps repetitions starts the product
(scheduler_site.wsgi) and measures create (POST /api/orders, spread over 16 users) and list (GET
/api/orders?page=1 of a user with 10,000 orders), then starts bench/floor.py under the very same
server command and measures its create and list: wrk -t2 -c16, --seconds each. The product's
orders are removed between repetitions, so every create run starts on the same table. It reports
medians per endpoint, the ratio product / floor, p99, and the web CPU per request. --profile adds
a py-spy recording of the product's web workers under each endpoint's load (bench/ANALYSIS.md).

Uses the benchmark's own database and Redis index (bench/environment.py: BENCH_DATABASE_URL,
BENCH_REDIS_URL; the Redis index is flushed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.environment import WORK_DIR, bench_env, setup

CREATE_USERS = 16
LIST_ORDERS = 10_000
CONNECTIONS = 16


def _granian(workers: int, threads: int) -> list[str]:
    return [
        "granian",
        "--interface",
        "wsgi",
        "scheduler_site.wsgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--access-log",
    ]


# name -> web command (PORT and the app are filled in); the production one is scripts/web (the
# Procfile's web line), whose settings were chosen with this list.
SERVERS: dict[str, list[str]] = {
    **{f"granian-{w}x{t}": _granian(w, t) for w, t in ((2, 1), (2, 2), (2, 4), (3, 2), (4, 1))},
    "gunicorn-2x1": [
        "gunicorn",
        "scheduler_site.wsgi",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "1",
        "--access-logfile",
        "-",
    ],
    "gunicorn-2x4": [
        "gunicorn",
        "scheduler_site.wsgi",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "2",
        "--threads",
        "4",
        "--access-logfile",
        "-",
    ],
    "gunicorn-3x1": [
        "gunicorn",
        "scheduler_site.wsgi",
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        "3",
        "--threads",
        "1",
        "--access-logfile",
        "-",
    ],
}


def _argv(name: str, port: int) -> list[str]:
    argv = [part.replace("{port}", str(port)) for part in SERVERS[name]]
    return [sys.executable, "-m", argv[0], *argv[1:]]


def reset_product_orders(keep_user_id: int) -> None:
    from django.db import connection

    from bench.harness import clear_queue_state
    from orders.models import Execution, Order

    with connection.cursor() as cursor:
        # Raw deletes (the triggers keep the counters); the list user's 10,000 stay.
        cursor.execute(f"DELETE FROM {Execution._meta.db_table}")  # noqa: S608 - table names from models
        cursor.execute(f"DELETE FROM {Order._meta.db_table} WHERE user_id <> %s", [keep_user_id])  # noqa: S608
    clear_queue_state()


def _measure(ctx: Any, stack: Any, script: Path, seconds: float) -> dict[str, Any]:
    from bench.harness import _wrk

    cpu = stack.cpu_seconds("web")
    result = _wrk(ctx, stack.base_url, script, CONNECTIONS, seconds)
    result["web_cpu_ms_per_request"] = (stack.cpu_seconds("web") - cpu) * 1000 / max(1, result["requests"])
    return result


def _profile(ctx: Any, stack: Any, script: Path, seconds: float, out: Path) -> dict[str, Any]:
    """py-spy on every web worker while wrk runs; collapsed stacks summed over the workers."""
    from bench.harness import _wrk
    from bench.stack import _tree

    web = stack.pids("web")[0]
    workers = [pid for pid in _tree(web) if pid != web] or [web]
    recorders = []
    for pid in workers:
        raw = out.with_name(f"{out.stem}-{pid}.txt")
        recorders.append(
            (
                raw,
                subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("py-spy")),
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--output",
                        str(raw),
                        "--nonblocking",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            )
        )
    time.sleep(0.5)
    result = _wrk(ctx, stack.base_url, script, CONNECTIONS, seconds)
    stacks: Counter[str] = Counter()
    for raw, proc in recorders:
        proc.wait(seconds + 30)
        if raw.exists():
            for line in raw.read_text().splitlines():
                frames, _, count = line.rpartition(" ")
                if frames and count.isdigit():
                    stacks[frames] += int(count)
    return {"requests": result["requests"], **summarize(stacks)}


def _short(frame: str) -> str:
    # "function (path/to/file.py:line)" -> "function (package/file.py)"
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/wt/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})"


def summarize(stacks: Counter[str], top: int = 400) -> dict[str, Any]:
    """Inclusive and self shares of the samples, per function (idle waits for a request left out)."""
    idle = ("accept", "select", "poll", "epoll", "_worker_loop", "wait (threading")
    total = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line, count in stacks.items():
        frames = [_short(f) for f in line.split(";") if f]
        if not frames or any(frames[-1].startswith(i) for i in idle):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    return {
        "samples": total,
        "inclusive": [(f, round(100 * c / total, 1)) for f, c in inclusive.most_common(top)] if total else [],
        "self": [(f, round(100 * c / total, 1)) for f, c in own.most_common(top)] if total else [],
    }


def run(servers: list[str], reps: int, seconds: float, profile: bool) -> dict[str, Any]:
    from dataclasses import replace

    from bench import harness
    from bench.stack import BenchStack

    env = bench_env()
    setup(env)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    ctx = harness.Context(profile=replace(harness.QUICK, repeats=reps), env=env, work_dir=WORK_DIR)
    harness.reset_orders()
    users = harness.bench_users(CREATE_USERS + 1)
    create_users, list_user = users[:CREATE_USERS], users[CREATE_USERS]
    harness.seed_orders(list_user, LIST_ORDERS)
    create_tokens, list_tokens = [harness.token_for(u) for u in create_users], [harness.token_for(list_user)]
    create_script = harness.token_script(ctx, "create_order", create_tokens)
    list_script = harness.token_script(ctx, "list_orders", list_tokens, path="/api/orders?page=1")
    floor_scripts = {
        "create": harness._lua(
            ctx, "floor", {"METHOD": "POST", "PATH": f"/floor/create?user={create_users[0].pk}"}, "floor-create"
        ),
        "list": harness._lua(ctx, "floor", {"METHOD": "GET", "PATH": f"/floor/list?user={list_user.pk}"}, "floor-list"),
        # Behind the product's authentication, the create without its job (bench/floor.py): the bound.
        "auth-create": harness.token_script(
            ctx, "create_order", create_tokens, "/floor/auth/create", "floor-auth-create"
        ),
        "auth-list": harness.token_script(ctx, "list_orders", list_tokens, "/floor/auth/list", "floor-auth-list"),
    }
    product_scripts = {"create": create_script, "list": list_script}
    results: dict[str, Any] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_at_start": os.getloadavg(),
        "connections": CONNECTIONS,
        "seconds": seconds,
        "create_users": CREATE_USERS,
        "list_user_orders": LIST_ORDERS,
        "servers": {},
    }
    for name in servers:
        runs: list[dict[str, Any]] = []
        for rep in range(1, reps + 1):
            for side, app, settings_module, scripts in (
                ("product", None, None, product_scripts),
                ("floor", "bench.floor:application", "bench.floor_settings", floor_scripts),
            ):
                stack = BenchStack(env=env, work_dir=WORK_DIR)
                try:
                    stack.start_web_command(_argv(name, stack.port), app=app, settings_module=settings_module)
                    for script in scripts.values():
                        harness._wrk(ctx, stack.base_url, script, 4, 1)  # warm-up: imports, connections
                    for endpoint, script in scripts.items():
                        if endpoint.endswith("create"):
                            # Every create run starts on the same table (the floor's two included).
                            reset_product_orders(list_user.pk)
                        result = _measure(ctx, stack, script, seconds)
                        result.update(server=name, side=side, endpoint=endpoint, rep=rep)
                        runs.append(result)
                        print(
                            f"{name} rep {rep} {side:7} {endpoint:11}: {result['rps']:.0f}/s "
                            f"p99 {result['p99_ms']:.1f} ms cpu {result['web_cpu_ms_per_request']:.2f} ms "
                            f"non-2xx {result['non_2xx']}",
                            flush=True,
                        )
                finally:
                    stack.stop_all()
        summary = summarize_runs(runs)
        results["servers"][name] = {"runs": runs, "summary": summary, "command": " ".join(SERVERS[name])}
        for endpoint, row in summary.items():
            print(
                f"{name} {endpoint}: product {row['product_rps']:.0f}/s (p99 {row['product_p99_ms']:.1f} ms) "
                f"floor {row['floor_rps']:.0f}/s ratio {row['ratio']:.2f}"
                + (
                    f"; authenticated floor {row['auth_floor_rps']:.0f}/s ({row['auth_floor_ratio']:.2f} of the floor),"
                    f" product / it {row['ratio_to_auth_floor']:.2f}"
                    if "auth_floor_rps" in row
                    else ""
                )
                + "".join(
                    f"; {side} non-2xx answers: {row[f'{side}_non_2xx']}, not a measurement"
                    for side in ("product", "floor")
                    if row[f"{side}_non_2xx"]
                ),
                flush=True,
            )
    if profile:
        name = servers[0]
        reset_product_orders(list_user.pk)
        stack = BenchStack(env=env, work_dir=WORK_DIR)
        try:
            stack.start_web_command(_argv(name, stack.port))
            for script in product_scripts.values():
                harness._wrk(ctx, stack.base_url, script, 4, 1)
            results["profile"] = {
                endpoint: _profile(ctx, stack, script, seconds, WORK_DIR / f"pyspy-{endpoint}.txt")
                for endpoint, script in product_scripts.items()
            }
            results["profile_server"] = name
        finally:
            stack.stop_all()
    results["load_average_at_end"] = os.getloadavg()
    return results


def summarize_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    def median(side: str, endpoint: str, key: str) -> float:
        return statistics.median(r[key] for r in runs if r["side"] == side and r["endpoint"] == endpoint)

    summary = {}
    for endpoint in ("create", "list"):
        product, floor = median("product", endpoint, "rps"), median("floor", endpoint, "rps")
        summary[endpoint] = {
            "product_rps": product,
            "product_p99_ms": median("product", endpoint, "p99_ms"),
            "product_cpu_ms": median("product", endpoint, "web_cpu_ms_per_request"),
            "floor_rps": floor,
            "floor_p99_ms": median("floor", endpoint, "p99_ms"),
            "floor_cpu_ms": median("floor", endpoint, "web_cpu_ms_per_request"),
            "ratio": product / floor if floor else float("nan"),
            "product_non_2xx": sum(r["non_2xx"] for r in runs if r["side"] == "product" and r["endpoint"] == endpoint),
            # A floor that answered errors would look fast: counted, and printed with the run.
            "floor_non_2xx": sum(
                r["non_2xx"] for r in runs if r["side"] == "floor" and r["endpoint"].endswith(endpoint)
            ),
        }
        # The floor behind the product's authentication (absent from runs made before it existed).
        auth = f"auth-{endpoint}"
        if any(r["endpoint"] == auth for r in runs):
            auth_rps = median("floor", auth, "rps")
            summary[endpoint].update(
                auth_floor_rps=auth_rps,
                auth_floor_p99_ms=median("floor", auth, "p99_ms"),
                auth_floor_cpu_ms=median("floor", auth, "web_cpu_ms_per_request"),
                auth_floor_ratio=auth_rps / floor if floor else float("nan"),
                ratio_to_auth_floor=product / auth_rps if auth_rps else float("nan"),
            )
    return summary


def _load_note(results: dict[str, Any], load: str) -> str:
    """What the load averages say about the run: a machine busy at the start was shared with other work
    throughout; a quiet start's later load includes the run's own (wrk, servers, MariaDB, Redis)."""
    if results["load_average_at_start"][0] >= 2:  # this machine's 2 cores all busy before the run began
        return (
            f"Load average at start {load}: the 2 cores were shared with other test suites (and callgrind runs) "
            "the whole time, so the absolute rates are a fraction of a quiet machine's and only the ratios "
            "within a row are comparable."
        )
    end = ", ".join(f"{x:.1f}" for x in results.get("load_average_at_end", []))
    return (
        f"Load average at start {load}{f', at end {end}' if end else ''}: a quiet machine at the start; the "
        "load during the run includes the run's own (wrk, the servers, MariaDB and Redis share the 2 cores). "
        "The rows' absolute rates are comparable with each other, not with a run on another machine."
    )


_AUTH_HEADER = " authenticated floor req/s | p99 ms | web CPU ms/req | of the floor | product / it |"


def markdown(results: dict[str, Any], source: str = "") -> str:
    """The run as docs/BENCHMARKS.md shows it (bench/report.py includes the newest ratio results)."""
    load = ", ".join(f"{x:.1f}" for x in results["load_average_at_start"])
    reps = len({r["rep"] for r in next(iter(results["servers"].values()))["runs"]})
    auth = all("auth_floor_rps" in row for server in results["servers"].values() for row in server["summary"].values())
    lines = [
        f"Run of {results['started_at']}{f' ({source})' if source else ''}: each server command served the "
        f"product and then bench/floor.py, {reps} times "
        f"each, wrk -t2 -c{results['connections']} for {results['seconds']:.0f} s per endpoint; create spread over "
        f"{results['create_users']} users, list = page 1 of a user with {results['list_user_orders']:,} orders. "
        f"Medians; ratio = product / floor. {_load_note(results, load)}"
        + (
            " The authenticated floor is the floor's SELECT, or its INSERT alone (autocommit, no job), behind the "
            "product's JWT authentication in a DRF view (bench/floor.py): less than any design of the product "
            "can do per request."
            if auth
            else ""
        ),
        "",
        "| server | endpoint | product req/s | p99 ms | web CPU ms/req | floor req/s | p99 ms | web CPU ms/req "
        "| ratio |" + (_AUTH_HEADER if auth else ""),
        "|---|---|---|---|---|---|---|---|---|" + ("---|" * 5 if auth else ""),
    ]
    for name, server in results["servers"].items():
        for endpoint, row in server["summary"].items():
            auth_cells = (
                f" {row['auth_floor_rps']:,.0f} | {row['auth_floor_p99_ms']:.0f} | {row['auth_floor_cpu_ms']:.2f} | "
                f"{row['auth_floor_ratio']:.2f} | **{row['ratio_to_auth_floor']:.2f}** |"
                if auth
                else ""
            )
            lines.append(
                f"| {name} | {endpoint} | {row['product_rps']:,.0f} | {row['product_p99_ms']:.0f} | "
                f"{row['product_cpu_ms']:.2f} | {row['floor_rps']:,.0f} | {row['floor_p99_ms']:.0f} | "
                f"{row['floor_cpu_ms']:.2f} | **{row['ratio']:.2f}** |{auth_cells}"
            )
    if "profile" in results:
        lines += [
            "",
            f"Where a product request's time goes (py-spy on every web worker of {results['profile_server']} "
            "under the same load, share of the samples in which the worker was serving a request; inclusive, "
            "so waits on MariaDB and Redis count: they hold the worker):",
            "",
            "| part of the request | " + " | ".join(results["profile"]) + " |",
            "|---|" + "---|" * len(results["profile"]),
        ]
        shares = {endpoint: dict(prof["inclusive"]) for endpoint, prof in results["profile"].items()}
        for label, frame in PROFILE_AREAS:
            cells = []
            for endpoint in results["profile"]:
                share = next((pct for f, pct in shares[endpoint].items() if f.startswith(frame)), None)
                cells.append("" if share is None else f"{share:.0f} %")
            if any(cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# (what it is, the frame whose inclusive share measures it), for the profile table.
PROFILE_AREAS = [
    ("the WSGI server and Django's handler, all of it", "WSGIHandler.__call__"),
    ("DRF's dispatch (everything below is inside it)", "APIView.dispatch"),
    ("authentication: JWT and the one MGET", "JWTAuthentication.authenticate"),
    ("... the JWT's signature and claims", "JWTAuthentication.get_validated_token"),
    ("... the MGET (deny-list and user), its wait included", "BasicKeyCommands.mget"),
    ("content negotiation", "APIView.perform_content_negotiation"),
    ("the body's validation (OrderWriteSerializer)", "_valid_or_every_error"),
    ("the create service, commit included", "order_create_once"),
    ("... the INSERT, the cap checked by its trigger", "insert_order"),
    ("... a transaction's round trips (none on the create's normal path)", "BaseDatabaseWrapper.set_autocommit"),
    ("... the job written to Redis after the INSERT", "schedule_occurrences"),
    ("... the order log line after commit", "write_event"),
    ("the page: statement and rows", "order_page_rows"),
    ("the orders' JSON shape", "orders_as_json"),
    ("pagination links", "PagePagination.get_paginated_response"),
    ("rendering (orjson)", "ORJSONRenderer.render"),
    ("CSP header", "CSPMiddleware.process_response"),
]


def resummarize(results: dict[str, Any], work_dir: Path = WORK_DIR) -> None:
    """Recompute results["profile"] from the raw py-spy files left in work_dir (all frames kept)."""
    for endpoint, prof in results.get("profile", {}).items():
        stacks: Counter[str] = Counter()
        for raw in work_dir.glob(f"pyspy-{endpoint}-*.txt"):
            for line in raw.read_text().splitlines():
                frames, _, count = line.rpartition(" ")
                if frames and count.isdigit():
                    stacks[frames] += int(count)
        prof.update(summarize(stacks))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratio")
    parser.add_argument("--servers", default="granian-2x2,granian-2x1,gunicorn-2x1,gunicorn-2x4")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--profile", action="store_true", help="py-spy the first server's product afterwards")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    results = run([s for s in args.servers.split(",") if s], args.reps, args.seconds, args.profile)
    out = Path(args.out) if args.out else WORK_DIR / f"ratio-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=1, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
