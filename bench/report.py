"""Turn a results file into docs/BENCHMARKS.md and its PNG plots.

Everything in the tables is computed from the JSON; the reading of the numbers (what bounds a
target, the profiles, what would move it) is kept by hand in bench/ANALYSIS.md and included as is.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.stats import median, spread

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
PLOTS_DIR = ROOT / "docs" / "benchmarks"
ANALYSIS = ROOT / "bench" / "ANALYSIS.md"
DRAFT_DIR = ROOT / "var" / "bench" / "report"

TARGETS = {
    "create_rps": 885,
    "list_rps": 1044,
    "api_p99_ms": 50,
    "batch_all_done_s": 4.0,
    "batch_rate": 500,
    "batch_ratio": 0.8,
    "precision_p99_s": 0.5,
    "precision_max_s": 1.5,
    "poll_ms": 10,
    "reconcile_100k_s": 60,
}


def newest_results(directory: Path) -> Path:
    files = sorted(p for p in directory.glob("*.json") if p.stem[-1].isdigit())
    if not files:
        raise SystemExit(f"no results in {directory}")
    return files[-1]


def _num(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def med(values: Iterable[float | None], digits: int = 0, scale: float = 1.0) -> str:
    """Median of the repetitions, with the spread (min-max) when there was more than one."""
    vals = [v * scale for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return "n/a"
    text = _num(median(vals), digits)
    if len(vals) > 1:
        lo, hi = spread(vals)
        text += f" ({_num(lo, digits)}-{_num(hi, digits)})"
    return text


def _ok(met: bool | None) -> str:
    return "n/a" if met is None else ("**met**" if met else "**not met**")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _short(worker_class: str) -> str:
    return worker_class.rsplit(".", 1)[-1]


# --- plots ---------------------------------------------------------------------------------------------


def _plots(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}

    batch = results.get("batch")
    if batch and batch["runs"]:
        fig, ax = plt.subplots(figsize=(9.5, 4.4))
        groups: dict[tuple[str, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        by_workers_n = {(run["kind"], run["worker_class"]): f"n={run['n']:,}" for run in batch["runs"]}
        for run in batch["runs"]:
            groups[(run["kind"], run["worker_class"])][run["workers"]].append(run.get("throughput_per_s", math.nan))
        styles = {"product": "-o", "ceiling": "--s", "ceiling_scheduled": ":^"}
        labels = {
            "product": "orders (product)",
            "ceiling": "no-op ceiling",
            "ceiling_scheduled": "no-op via rq-scheduler",
        }
        for (kind, worker_class), by_workers in sorted(groups.items()):
            xs = sorted(by_workers)
            ys = [median(by_workers[x]) for x in xs]
            lo = [ys[i] - spread(by_workers[x])[0] for i, x in enumerate(xs)]
            hi = [spread(by_workers[x])[1] - ys[i] for i, x in enumerate(xs)]
            ax.errorbar(
                xs,
                ys,
                yerr=[lo, hi],
                fmt=styles[kind],
                capsize=3,
                color={"ceiling": "tab:green", "ceiling_scheduled": "tab:olive"}.get(kind, "tab:blue")
                if worker_class.endswith("SimpleWorker")
                else {"ceiling": "tab:orange", "ceiling_scheduled": "tab:brown"}.get(kind, "tab:red"),
                label=f"{_short(worker_class)} ({by_workers_n[(kind, worker_class)]}): {labels[kind]}",
            )
        ax.axhline(TARGETS["batch_rate"], color="grey", lw=0.8, ls="-.", label="target 500/s (2 workers)")
        ax.set_xlabel("worker processes")
        ax.set_ylabel("executions (jobs) per second")
        ax.set_title("Orders (or no-op jobs) due in the same second: throughput vs worker processes")
        ax.set_xticks(sorted({r["workers"] for r in batch["runs"]}))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "throughput-vs-workers.png", dpi=110)
        plt.close(fig)
        made["throughput"] = "throughput-vs-workers.png"

    precision, drift = results.get("precision"), results.get("drift")
    if precision and precision["runs"]:
        fig, axes = plt.subplots(1, 2 if drift else 1, figsize=(10 if drift else 6, 4))
        ax0 = axes[0] if drift else axes
        lateness_ms = [v * 1000 for run in precision["runs"] for v in run["lateness_s"]]
        ax0.hist(lateness_ms, bins=40, color="tab:blue")
        ax0.axvline(0, color="red", lw=0.8)
        ax0.set_xlabel("lateness: started - due (ms)")
        ax0.set_ylabel("orders")
        ax0.set_title(
            f"Precision: {len(lateness_ms)} starts ({len(precision['runs'])} runs), due over {precision['span_s']} s"
        )
        if drift and drift.get("k"):
            ax1 = axes[1]
            ax1.plot(drift["k"], [v * 1000 for v in drift["lateness_s"]], ".", color="tab:orange")
            ax1.set_xlabel("occurrence k (every 1 s)")
            ax1.set_ylabel("started_k - due_k (ms)")
            ax1.set_title(f"Drift: slope {drift['slope_ms_per_occurrence']:.2f} ms per occurrence")
            ax1.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / "lateness.png", dpi=110)
        plt.close(fig)
        made["lateness"] = "lateness.png"

    api = results.get("api")
    if api and api["runs"]:
        fig, ax = plt.subplots(figsize=(7, 3.8))
        conns = sorted({r["connections"] for r in api["runs"]})
        width = 0.38
        for j, endpoint in enumerate(("create", "list")):
            ys = [
                median([r["rps"] for r in api["runs"] if r["endpoint"] == endpoint and r["connections"] == c])
                for c in conns
            ]
            ax.bar([i + (j - 0.5) * width for i in range(len(conns))], ys, width, label=endpoint)
        ax.axhline(TARGETS["create_rps"], color="tab:blue", lw=0.8, ls="--", label="original: create 885/s")
        ax.axhline(TARGETS["list_rps"], color="tab:orange", lw=0.8, ls="--", label="original: list 1,044/s")
        ax.set_xticks(range(len(conns)), [f"{c} conn." for c in conns])
        ax.set_ylabel("requests per second")
        ax.set_title("API throughput (median of runs)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "api.png", dpi=110)
        plt.close(fig)
        made["api"] = "api.png"
    return made


# --- sections ------------------------------------------------------------------------------------------


def _api_section(api: dict[str, Any]) -> str:
    rows = []
    by: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for run in api["runs"]:
        by[(run["endpoint"], run["connections"])].append(run)
    for (endpoint, conns), runs in sorted(by.items()):
        rows.append(
            [
                endpoint,
                str(conns),
                med([r["rps"] for r in runs]),
                med([r["p50_ms"] for r in runs], 1),
                med([r["p99_ms"] for r in runs], 1),
                med([r.get("web_cpu_ms_per_request") for r in runs], 1),
                str(sum(r["non_2xx"] for r in runs)),
                str(sum(r["socket_errors"] for r in runs)),
            ]
        )
    memory = api.get("memory", {})
    return (
        f"{web_server(api)}: `{api.get('web_command', '')}`; list = `GET /api/orders?page=1` (page of "
        f"{api.get('list_page_orders', 50)}) for a user with a few hundred orders; create = `POST /api/orders` "
        "with a JWT (users rotated per request), a one-time order in 2031.\n\n"
        + _table(
            [
                "endpoint",
                "connections",
                "requests/s",
                "p50 ms",
                "p99 ms",
                "web CPU ms/request",
                "non-2xx",
                "socket errors",
            ],
            rows,
        )
        + f"\n\nWeb RSS (master + workers): {_num(memory.get('web_at_rest_mib', math.nan))} MiB at rest, "
        f"{_num(memory.get('web_after_load_mib', math.nan))} MiB after the load.\n" + _floor_section(api)
    )


def _floor_section(api: dict[str, Any]) -> str:
    floor = api.get("floor") or []
    if not floor:
        return ""
    product = {
        endpoint: median([r["rps"] for r in api["runs"] if r["endpoint"] == endpoint and r["connections"] == 16])
        for endpoint in ("list", "create")
    }
    rows = []
    for endpoint, what in (
        ("hello", "an empty JSON response: Django's request cycle alone"),
        ("list", "the 50 newest orders of one user: one raw SELECT, dumped as JSON"),
        ("create", "one raw INSERT of an order row in a transaction, one Redis ZADD"),
    ):
        runs = [r for r in floor if r["endpoint"] == endpoint]
        if not runs:
            continue
        rps = median([r["rps"] for r in runs])
        rows.append(
            [
                endpoint,
                what,
                med([r["rps"] for r in runs]),
                med([r["p99_ms"] for r in runs], 1),
                med([r.get("web_cpu_ms_per_request") for r in runs], 2),
                f"{product[endpoint] / rps:.2f}" if endpoint in product and rps else "",
                f"{TARGETS[endpoint + '_rps'] / rps:.2f}" if endpoint in product and rps else "",
            ]
        )
    return (
        "\n**The floor** (`bench/floor.py`): the same web server command and settings serving Django with no "
        "middleware, no DRF, no authentication and no validation, only the statements each endpoint cannot "
        "avoid, at 16 connections, right after the product in the same run. No tuning of the application "
        "can take an endpoint past its floor on this machine.\n\n"
        + _table(
            [
                "floor endpoint",
                "what it does",
                "requests/s",
                "p99 ms",
                "web CPU ms/request",
                "product / floor",
                "target / floor",
            ],
            rows,
        )
        + "\n"
    )


def _batch_groups(batch: dict[str, Any]) -> dict[tuple[str, int], dict[str, list[dict[str, Any]]]]:
    groups: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for run in batch["runs"]:
        groups[(run["worker_class"], run["workers"])][run["kind"]].append(run)
    return groups


def _ratios(kinds: dict[str, list[dict[str, Any]]]) -> list[float]:
    """product/ceiling per repetition (ratios within one run, not of medians)."""
    out = []
    for p in kinds.get("product", []):
        c = next((c for c in kinds.get("ceiling", []) if c["rep"] == p["rep"]), None)
        if c and c.get("throughput_per_s"):
            out.append(p.get("throughput_per_s", math.nan) / c["throughput_per_s"])
    return out


def _batch_section(batch: dict[str, Any]) -> str:
    rows = []
    for (worker_class, workers), kinds in sorted(_batch_groups(batch).items()):
        product = kinds.get("product", [])
        ceiling = kinds.get("ceiling", [])
        scheduled = kinds.get("ceiling_scheduled", [])
        rows.append(
            [
                _short(worker_class),
                str(workers),
                str(product[0]["n"] if product else ""),
                str(len(product)),
                med([r.get("first_done_s") for r in product], 2),
                med([r.get("half_done_s") for r in product], 2),
                med([r.get("all_done_s") for r in product], 2),
                med([r.get("throughput_per_s") for r in product]),
                med([r.get("throughput_per_s") for r in ceiling]),
                med(_ratios(kinds), 2),
                med([r.get("throughput_per_s") for r in scheduled]),
                med([r.get("all_done_s") for r in scheduled], 2),
                med([r.get("worker_cpu_ms_per_job") for r in product], 1),
                med([r.get("worker_cpu_ms_per_job") for r in ceiling], 1),
                med([r.get("scheduler_cpu_ms_per_job") for r in scheduled], 2),
                str(sum(r.get("early_starts", 0) + r.get("failed", 0) for r in product)),
            ]
        )
    return _table(
        [
            "worker class",
            "workers",
            "orders",
            "runs",
            "first done s",
            "half done s",
            "all done s",
            "orders/s",
            "no-op ceiling jobs/s",
            "orders / ceiling",
            "no-op via rq-scheduler jobs/s",
            "no-op via rq-scheduler all done s",
            "worker CPU ms/order",
            "worker CPU ms/no-op job",
            "scheduler CPU ms/job moved",
            "early or failed",
        ],
        rows,
    ) + (
        "\n\nTimes are from the due second to the `finished_at` of the first, the median and the last execution. "
        "Rates are executions divided by the time from the first start to the last finish. The ceiling is the same "
        "worker processes draining the same number of no-op RQ jobs pushed straight into the queue, measured in the "
        "same run; the third column group is no-op jobs due in the same second through rq-scheduler (scheduler "
        "and workers together, no database). CPU per job is the CPU time of the worker (or scheduler) processes, "
        "children included, divided by the jobs: unlike the rates it hardly depends on the other load on the machine.\n"
    )


def _webhooks_section(webhooks: dict[str, Any]) -> str:
    runs = webhooks["runs"]
    rows = [
        [
            str(r["rep"]),
            _num(r.get("first_done_s", math.nan), 2),
            _num(r.get("half_done_s", math.nan), 2),
            _num(r.get("all_done_s", math.nan), 2),
            _num(r.get("throughput_per_s", math.nan)),
            f"{r['ids_succeeded']:,} / {r['n']:,}",
            str(r["ids_succeeded_more_than_once"]),
            str(r["failed"]),
            _num(r.get("worker_cpu_ms_per_delivery", math.nan), 1),
        ]
        for r in runs
    ]
    header = ["rep", "first done s", "half done s", "all done s", "deliveries/s", "ids succeeded", "twice", "failed"]
    header.append("worker CPU ms/delivery")
    intro = (
        f"{webhooks['orders']:,} orders with a target URL, due in the same second, {webhooks['workers']} "
        f"SimpleWorkers, a receiver on the loopback that answers each request after "
        f"{webhooks['receiver_delay_s'] * 1000:.0f} ms; times after the due time. The receiver counts 2xx answers "
        "per webhook-id.\n\n"
    )
    return intro + _table(header, rows) + "\n"


def _precision_section(precision: dict[str, Any]) -> str:
    runs = precision["runs"]
    rows = [
        [
            str(r["rep"]),
            f"{r['executed']}/{r['n']}",
            _num(r["p50_s"] * 1000),
            _num(r["p99_s"] * 1000),
            _num(r["max_s"] * 1000),
            str(r["early_starts"]),
        ]
        for r in runs
    ]
    rows.append(
        [
            "median",
            "",
            med([r["p50_s"] for r in runs], 0, 1000),
            med([r["p99_s"] for r in runs], 0, 1000),
            med([r["max_s"] for r in runs], 0, 1000),
            str(sum(r["early_starts"] for r in runs)),
        ]
    )
    return (
        f"{runs[0]['n']} one-time orders due at instants to the microsecond, spread over {precision['span_s']} s, "
        f"{precision['workers']} x {_short(precision['worker_class'])}. Lateness = `started_at` (when the executor of "
        "the attempt that ran began) - due.\n\n"
        + _table(["run", "executed", "p50 ms", "p99 ms", "max ms", "early starts"], rows)
        + "\n"
    )


def _precision_load_section(load: dict[str, Any]) -> str:
    runs = load["runs"]
    rows = [
        [
            str(r["rep"]),
            str(r["users"]),
            f"{r['requests']} ({_num(r['requests_per_s'])}/s)",
            str(r["errors"]),
            f"{r['executed']}/{r['orders']}",
            _num(r["p50_s"] * 1000),
            _num(r["p99_s"] * 1000),
            _num(r["max_s"] * 1000),
            str(r["early_starts"]),
        ]
        for r in runs
    ]
    rows.append(
        [
            "median",
            "",
            "",
            "",
            "",
            med([r["p50_s"] for r in runs], 0, 1000),
            med([r["p99_s"] for r in runs], 0, 1000),
            med([r["max_s"] for r in runs], 0, 1000),
            str(sum(r["early_starts"] for r in runs)),
        ]
    )
    return (
        "Simulated users work through the API over loopback (create a one-time order due 1.5-4 s ahead at an "
        "instant to the microsecond, list, rename, pause and resume another order, run it now), "
        f"{load['workers']} x {_short(load['worker_class'])}, the default poll interval. Lateness of the "
        "orders the users created = `started_at` - due.\n\n"
        + _table(["run", "users", "requests", "errors", "executed", "p50 ms", "p99 ms", "max ms", "early starts"], rows)
        + "\n"
    )


def _drift_section(drift: dict[str, Any]) -> str:
    return (
        _table(
            [
                "occurrences",
                "executed",
                "max abs(lateness) ms",
                "slope ms/occurrence",
                "p50 first half ms",
                "p50 second half ms",
                "early",
            ],
            [
                [
                    str(drift["occurrences"]),
                    str(drift["executed"]),
                    _num(drift["max_abs_s"] * 1000),
                    _num(drift["slope_ms_per_occurrence"], 2),
                    _num(drift["first_half_p50_s"] * 1000),
                    _num(drift["second_half_p50_s"] * 1000),
                    str(drift["early_starts"]),
                ]
            ],
        )
        + "\n"
    )


def _scale_section(scale: dict[str, Any]) -> str:
    proc = scale.get("scheduler_process", {})
    rows = [
        ["active orders in the database", _num(scale["orders"])],
        ["jobs in rq-scheduler's sorted set after reconcile", _num(scale["scheduled_jobs"])],
        ["`reconcile_orders` wall time (empty Redis → all scheduled)", f"{_num(scale['reconcile_seconds'], 1)} s"],
        ["reconcile rate", f"{_num(scale['orders'] / scale['reconcile_seconds'])} orders/s"],
        ["Redis memory per scheduled order", f"{_num(scale['redis_bytes_per_order'])} bytes"],
        ["Redis used memory with all scheduled", f"{_num(scale['redis_used_mib'], 1)} MiB"],
        [
            "scheduler pass, nothing due, empty schedule (p50 / p99)",
            f"{_num(scale['poll_empty']['p50_ms'], 2)} / {_num(scale['poll_empty']['p99_ms'], 2)} ms",
        ],
        [
            "scheduler pass, nothing due, all scheduled (p50 / p99)",
            f"{_num(scale['poll_full']['p50_ms'], 2)} / {_num(scale['poll_full']['p99_ms'], 2)} ms",
        ],
        [
            "scheduler process CPU per poll (interval " + _num(proc.get("interval_s", math.nan), 1) + " s)",
            f"{_num(proc.get('cpu_ms_per_poll', math.nan), 2)} ms "
            f"({_num(proc.get('cpu_share', math.nan) * 100, 1)} % of a core)",
        ],
        ["scheduler RSS", f"{_num(proc.get('rss_mib', math.nan))} MiB"],
    ]
    for run, conns in zip(scale.get("list_heavy_user", []), (1, 16), strict=False):
        rows.append(
            [
                f"list page 1 for a user with {_num(scale['heavy_user_orders'])} orders, {conns} conn.",
                f"{_num(run['rps'])} req/s, p50 {_num(run['p50_ms'], 1)} ms, p99 {_num(run['p99_ms'], 1)} ms",
            ]
        )
    last = scale.get("list_heavy_user_last_page")
    if last:
        rows.append(
            [
                f"list page {last['page']} (the last) for that user, 1 conn.",
                f"{_num(last['rps'])} req/s, p50 {_num(last['p50_ms'], 1)} ms, p99 {_num(last['p99_ms'], 1)} ms",
            ]
        )
    return _table(["measure", "value"], rows) + f"\n\nreconcile said: `{scale.get('reconcile_output', '')}`\n"


def _calendar_section(calendar: dict[str, Any]) -> str:
    cursor, anchor = calendar["next_occurrence"]["with_cursor"], calendar["next_occurrence"]["from_anchor"]
    rows = [
        ["cron orders in the database (a mix of expressions and zones, below)", _num(calendar["orders"])],
        [
            "next occurrence from the order's cursor (the engine's question): CPU p50 / p99; wall p99 / max",
            f"{_num(cursor['cpu_p50_us'])} / {_num(cursor['cpu_p99_us'])} µs; "
            f"{_num(cursor['p99_us'])} / {_num(cursor['max_us'])} µs ({_num(cursor['samples'])} orders)",
        ],
        [
            f"occurrence k counted from an anchor {anchor['anchor_days_back']} days back: CPU p50 / p99",
            f"{_num(anchor['cpu_p50_us'])} / {_num(anchor['cpu_p99_us'])} µs ({_num(anchor['samples'])} orders)",
        ],
        ["`reconcile_orders` wall time (empty Redis → all scheduled)", f"{_num(calendar['reconcile_seconds'], 1)} s"],
        ["jobs in rq-scheduler's sorted set after reconcile", _num(calendar["scheduled_jobs"])],
        ["sampled jobs placed at their order's next_run_at", calendar["jobs_at_their_due_time"]],
    ]
    mix = ", ".join(f"`{m}`" for m in calendar["mix"])
    return _table(["measure", "value"], rows) + f"\n\nExpressions: {mix}.\n"


def web_server(api: dict[str, Any]) -> str:
    """The server the API scenario ran under: its command line names it (granian's, scripts/web);
    results older than scripts/web recorded gunicorn's options without its name."""
    return "granian" if api.get("web_command", "").startswith("granian") else "gunicorn"


def _memory_section(results: dict[str, Any]) -> str:
    rows = []
    api = results.get("api", {}).get("memory", {})
    if api:
        parent = {"granian": "granian main process", "gunicorn": "gunicorn master"}[web_server(results["api"])]
        web = f"web ({parent} + workers)"
        rows.append([web, "at rest", _num(api.get("web_at_rest_mib"))])
        rows.append([web, "after scenario 1", _num(api.get("web_after_load_mib"))])
    for entry in results.get("batch", {}).get("memory", []):
        rows.append([entry["process"], entry["state"], _num(entry["rss_mib"])])
    return _table(["process (tree)", "when", "RSS MiB"], rows) + "\n" if rows else "not measured\n"


# What each compared figure is, and whether more is better.
_METRICS_FIGURES = [
    ("api", "create", "rps", "create req/s", True),
    ("api", "create", "web_cpu_ms_per_request", "create web CPU ms/request", False),
    ("api", "list", "rps", "list req/s", True),
    ("api", "list", "web_cpu_ms_per_request", "list web CPU ms/request", False),
    ("batch", None, "throughput_per_s", "batch executions/s", True),
    ("batch", None, "all_done_s", "batch all done (s after due)", False),
    ("batch", None, "worker_cpu_ms_per_job", "batch worker CPU ms/execution", False),
]


def metrics_cost(scenario: dict[str, Any]) -> list[dict[str, Any]]:
    """Median of each figure with metrics on and off, and the cost: how much worse "on" is, as a
    fraction of "off" (negative when "on" measured better)."""
    out = []
    for part, endpoint, key, label, higher_is_better in _METRICS_FIGURES:
        sides = {}
        for mode in ("on", "off"):
            values = [
                r[key]
                for r in scenario["runs"]
                if r["part"] == part
                and r["mode"] == mode
                and (endpoint is None or r.get("endpoint") == endpoint)
                and isinstance(r.get(key), (int, float))
                and not math.isnan(r[key])
            ]
            sides[mode] = median(values) if values else math.nan
        on, off = sides["on"], sides["off"]
        cost = (off - on) / off if higher_is_better else (on - off) / off
        out.append({"figure": label, "on": on, "off": off, "cost": cost, "throughput": higher_is_better})
    return out


def metrics_target(scenario: dict[str, Any], *, cpu: bool = False) -> tuple[str, bool]:
    """The worst cost of the metrics and whether every one is under 5 %: of the throughput figures,
    or (cpu) of the CPU time per request and per execution, which the machine's other load moves
    far less (see bench/ANALYSIS.md)."""
    figures = [c for c in metrics_cost(scenario) if ("CPU" in c["figure"] if cpu else c["throughput"])]
    worst = max(figures, key=lambda c: c["cost"])
    return f"worst: {worst['figure']} {worst['cost'] * 100:+.1f} %", all(c["cost"] < 0.05 for c in figures)


def metrics_instruction_rows(scenario: dict[str, Any]) -> list[list[str]]:
    counted = scenario.get("instructions") or {}
    names = {"create": "POST /api/orders", "list": "GET /api/orders (50 orders)", "job": "one order run by a worker"}
    return [
        [
            names.get(kind, kind),
            f"{sides['on'] / 1e6:.2f} M",
            f"{sides['off'] / 1e6:.2f} M",
            f"{sides['cost_percent']:+.2f} %",
        ]
        for kind, sides in counted.get("per_operation", {}).items()
    ]


def metrics_instruction_target(scenario: dict[str, Any]) -> tuple[str, bool | None]:
    """The worst instruction cost of the metrics, and whether every one is under 5 %."""
    per_op = (scenario.get("instructions") or {}).get("per_operation") or {}
    if not per_op:
        return "not measured (valgrind missing or profile without it)", None
    kind, sides = max(per_op.items(), key=lambda item: item[1]["cost_percent"])
    return f"worst: {kind} {sides['cost_percent']:+.2f} %", all(s["cost_percent"] < 5 for s in per_op.values())


def metrics_section(scenario: dict[str, Any]) -> str:
    counted = scenario.get("instructions")
    instruction_lines = []
    if counted:
        instruction_lines = [
            f"CPU instructions per operation, counted by valgrind's callgrind (bench/instructions.py: each "
            f"process run with {counted['small']} and {counted['large']} operations, the difference divided by "
            f"{counted['large'] - counted['small']}). Unlike the timings above, these counts do not move with "
            "the machine's other load.",
            "",
            _table(["operation", "metrics on", "metrics off", "cost"], metrics_instruction_rows(scenario)),
            "",
        ]
    rows = [
        [c["figure"], _num(c["on"], 2), _num(c["off"], 2), f"{c['cost'] * 100:+.1f} %"] for c in metrics_cost(scenario)
    ]
    reps = max((r["rep"] for r in scenario["runs"]), default=0)
    scrape = scenario.get("scrape_ms") or []
    return "\n".join(
        [
            f"The API at {scenario['connections']} connections and a batch of {scenario['batch_orders']:,} orders "
            f"on {scenario['batch_workers']} SimpleWorkers, each run with `METRICS_ENABLED` on and off on fresh "
            f'processes, alternated within the run ({reps} pair(s)); medians. The cost is how much worse "on" '
            'measured than "off" (negative: "on" measured better, i.e. noise).',
            "",
            _table(["figure", "metrics on", "metrics off", "cost"], rows),
            "",
            *instruction_lines,
            f"One scrape of `/metrics` took {_num(median(scrape), 1) if scrape else 'n/a'} ms (median) with "
            f"{scenario.get('scrape_orders', 0)} orders in the database.",
            "",
        ]
    )


def _targets(results: dict[str, Any]) -> str:
    rows: list[list[str]] = []

    def add(name: str, measured: str, met: bool | None) -> None:
        rows.append([name, measured, _ok(met)])

    api = results.get("api")
    if api:
        for endpoint, key in (("create", "create_rps"), ("list", "list_rps")):
            runs = [r for r in api["runs"] if r["endpoint"] == endpoint and r["connections"] == 16]
            if runs:
                rps, p99 = median([r["rps"] for r in runs]), median([r["p99_ms"] for r in runs])
                add(
                    f"{endpoint} at 16 connections: ≥ {TARGETS[key]:,} req/s, p99 < 50 ms",
                    f"{_num(rps)} req/s, p99 {_num(p99, 1)} ms",
                    rps >= TARGETS[key] and p99 < TARGETS["api_p99_ms"],
                )
    batch = results.get("batch")
    if batch:
        kinds = _batch_groups(batch).get(("rq.worker.SimpleWorker", 2))
        if kinds:
            product = kinds.get("product", [])
            all_done = median([r.get("all_done_s", math.nan) for r in product])
            rate = median([r.get("throughput_per_s", math.nan) for r in product])
            ratio = median(_ratios(kinds))
            add(
                f"batch of {batch['orders']:,}, 2 SimpleWorkers: all done within 4 s",
                f"{_num(all_done, 2)} s",
                all_done <= 4,
            )
            add("… at least 500 executions/s", f"{_num(rate)}/s", rate >= 500)
            add("… at least 0.8 of the no-op ceiling", _num(ratio, 2), ratio >= 0.8)
    webhooks = results.get("webhooks")
    if webhooks and webhooks["runs"]:
        all_done = median([r.get("all_done_s", math.nan) for r in webhooks["runs"]])
        once = all(r["ids_succeeded"] == r["n"] and r["ids_succeeded_more_than_once"] == 0 for r in webhooks["runs"])
        add(
            f"{webhooks['orders']:,} webhook orders, 100 ms receiver, {webhooks['workers']} workers: all within 10 s",
            f"{_num(all_done, 2)} s",
            all_done <= 10,
        )
        add("… each webhook-id succeeded exactly once", "yes" if once else "no", once)
    precision = results.get("precision")
    if precision and precision["runs"]:
        runs = precision["runs"]
        p99, mx = median([r["p99_s"] for r in runs]), median([r["max_s"] for r in runs])
        early = sum(r["early_starts"] for r in runs)
        add("precision, idle: p99 lateness <= 50 ms", f"{_num(p99 * 1000)} ms", p99 <= 0.05)
        add("precision, idle: max <= 250 ms", f"{_num(mx * 1000)} ms", mx <= 0.25)
        add("precision: zero early starts", str(early), early == 0)
    load = results.get("precision_load")
    if load and load["runs"]:
        runs = load["runs"]
        p99, mx = median([r["p99_s"] for r in runs]), median([r["max_s"] for r in runs])
        early = sum(r["early_starts"] for r in runs)
        users = runs[0]["users"]
        add(f"precision under {users} API users: p99 lateness <= 50 ms", f"{_num(p99 * 1000)} ms", p99 <= 0.05)
        add(f"precision under {users} API users: max <= 250 ms", f"{_num(mx * 1000)} ms", mx <= 0.25)
        add(f"precision under {users} API users: zero early starts", str(early), early == 0)
    drift = results.get("drift")
    if drift and drift.get("executed"):
        grows = abs(drift["slope_ms_per_occurrence"]) >= 1.0
        add(
            "drift: lateness does not grow with k (abs(slope) < 1 ms per occurrence)",
            f"{_num(drift['slope_ms_per_occurrence'], 2)} ms/occurrence, max {_num(drift['max_abs_s'] * 1000)} ms",
            not grows and drift["executed"] == drift["occurrences"],
        )
    scale = results.get("scale")
    if scale:
        poll = scale["poll_full"]["p50_ms"]
        add(
            f"scheduler poll at {_num(scale['scheduled_jobs'])} scheduled: < 10 ms",
            f"{_num(poll, 2)} ms (p50)",
            poll < 10,
        )
        per_100k = scale["reconcile_seconds"] * 100_000 / max(1, scale["orders"])
        exact = scale["orders"] >= 100_000
        add(
            "reconcile of 100,000 orders < 60 s",
            f"{_num(scale['reconcile_seconds'], 1)} s" if exact else f"{_num(per_100k)} s (extrapolated)",
            per_100k < 60,
        )
    metrics = results.get("metrics")
    if metrics:
        add("metrics on vs off: API and batch throughput within 5 %", *metrics_target(metrics))
        add("metrics on vs off: CPU per request and per execution within 5 %", *metrics_target(metrics, cpu=True))
        add("metrics on vs off: CPU instructions per operation within 5 %", *metrics_instruction_target(metrics))
    calendar = results.get("calendar")
    if calendar:
        per_100k = calendar["reconcile_seconds"] * 100_000 / max(1, calendar["orders"])
        exact = calendar["orders"] >= 100_000
        add(
            "reconcile of 100,000 cron orders < 60 s",
            f"{_num(calendar['reconcile_seconds'], 1)} s" if exact else f"{_num(per_100k)} s (extrapolated)",
            per_100k < 60,
        )
        cost = calendar["next_occurrence"]["with_cursor"]
        add(
            "a cron order's next occurrence (CPU p99) < 1 ms",
            f"{_num(cost['cpu_p99_us'])} µs (wall p99 {_num(cost['p99_us'])} µs)",
            cost["cpu_p99_us"] < 1000,
        )
    return _table(["target", "measured (median)", ""], rows)


def render(results: dict[str, Any], plots: dict[str, str], plot_prefix: str, source: str = "") -> str:
    machine = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    profile = results["profile"]
    parts = [
        "# Benchmarks",
        "",
        f"<!-- Generated by `python -m bench report` from {source or 'bench/results/'}; "
        "edit bench/ANALYSIS.md or bench/report.py, not this file. -->",
        "",
        f"Run of {results['started_at']} (profile `{profile['name']}`, {profile['repeats']} repetition(s) per "
        f"measurement, {results['duration_s'] / 60:.0f} min) of commit `{results.get('commit', '?')}`. "
        "Regenerate with `make bench` (full, long) or "
        "`make bench-quick` (under 2 minutes, smaller counts, not published here).",
        "",
        f"**Machine:** {machine['cores']} cores ({machine['cpu_model']}), {machine['memory_gib']} GiB; load average "
        f"at start {', '.join(f'{x:.2f}' for x in machine['load_average_at_start'])}. The machine is shared with "
        "other engineers' test runs and is noisy: quote medians, read the spread (min-max in brackets), and compare "
        "ratios measured within one run rather than absolute numbers across runs. Load generator (wrk), database, "
        "Redis and all app processes share the same 2 cores.",
        "",
        *[f"- {note}" for note in results.get("notes", [])],
        *([""] if results.get("notes") else []),
        f"**Versions:** {versions}.",
        "",
        "**Settings:** DEBUG off; Procfile as committed:",
        "",
        "```",
        *results["settings"]["procfile"],
        "```",
        "",
        f"Scheduler poll interval {results['settings']['scheduler_poll_interval_s']} s, executor "
        f"`{results['settings']['executor']}` (no outside I/O), CONN_MAX_AGE {results['settings']['conn_max_age']} s, "
        f"email {results['settings']['email']}, log level {results['settings']['log_level']}.",
        "",
        "## Targets",
        "",
        _targets(results),
        "",
    ]
    ratio_files = sorted((ROOT / "bench" / "results").glob("ratio-*.json"))
    if ratio_files:
        from bench import ratio

        newest = ratio_files[-1]
        parts += [
            "## 1a. API against its floor, in one run (`python -m bench.ratio`)",
            "",
            ratio.markdown(json.loads(newest.read_text()), source=f"bench/results/{newest.name}"),
            "",
        ]
        # A run without py-spy (--profile) keeps the newest profile in view, with its own run's figures.
        profiled = [f for f in ratio_files if "profile" in json.loads(f.read_text())]
        if profiled and profiled[-1] != newest:
            parts += [
                "### The newest run with a profile",
                "",
                ratio.markdown(json.loads(profiled[-1].read_text()), source=f"bench/results/{profiled[-1].name}"),
                "",
            ]
    if "api" in results:
        parts += ["## 1. API", "", _api_section(results["api"])]
        if "api" in plots:
            parts += [f"![API throughput]({plot_prefix}{plots['api']})", ""]
    if "batch" in results:
        parts += [f"## 2. Batch: {results['batch']['orders']:,} one-time orders due in the same second", ""]
        parts += [_batch_section(results["batch"])]
        if "throughput" in plots:
            parts += [f"![throughput vs workers]({plot_prefix}{plots['throughput']})", ""]
    if "webhooks" in results:
        parts += [f"## 2b. Webhooks: {results['webhooks']['orders']:,} webhook orders due in the same second", ""]
        parts += [_webhooks_section(results["webhooks"])]
    if "precision" in results:
        parts += ["## 3. Precision", "", _precision_section(results["precision"])]
    if "precision_load" in results:
        parts += ["### Precision under API load", "", _precision_load_section(results["precision_load"])]
    if "drift" in results:
        parts += ["## 4. Drift: a recurring order every second", "", _drift_section(results["drift"])]
    if "lateness" in plots:
        parts += [f"![lateness]({plot_prefix}{plots['lateness']})", ""]
    if "scale" in results:
        parts += [f"## 5. Scale: {results['scale']['orders']:,} future orders", "", _scale_section(results["scale"])]
    if "calendar" in results:
        parts += [
            f"## 5b. Calendar: {results['calendar']['orders']:,} cron orders",
            "",
            _calendar_section(results["calendar"]),
        ]
    if "metrics" in results:
        parts += ["## 6. The cost of the metrics", "", metrics_section(results["metrics"])]
    parts += ["## 7. Memory (resident set size)", "", _memory_section(results)]
    if ANALYSIS.exists():
        parts += ["", ANALYSIS.read_text().strip(), ""]
    return "\n".join(parts).rstrip() + "\n"


def write(path: Path, *, publish: bool = True) -> Path:
    results = json.loads(path.read_text())
    if publish:
        plots = _plots(results, PLOTS_DIR)
        DOC.write_text(render(results, plots, "benchmarks/", source=f"bench/results/{path.name}"))
        return DOC
    DRAFT_DIR.mkdir(parents=True, exist_ok=True)
    plots = _plots(results, DRAFT_DIR)
    out = DRAFT_DIR / f"BENCHMARKS-{path.stem}.md"
    out.write_text(render(results, plots, "", source=str(path)))
    return out
