"""`python -m bench [--profile quick|full] [--only api,batch,...]` and `python -m bench report FILE`.

The benchmark uses its own database and Redis index, never the app's:
  BENCH_DATABASE_URL (default mysql://root@127.0.0.1:3306/scheduler_bench; created if missing)
  BENCH_REDIS_URL    (default redis://127.0.0.1:6379/14; this whole index is flushed)
It runs the processes as production would (DEBUG off, a throw-away SECRET_KEY, no HTTPS redirect
because wrk speaks plain HTTP on the loopback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.environment import RESULTS_DIR, WORK_DIR, bench_env, setup


def _scenarios(results: dict[str, Any]) -> list[str]:
    scenarios = ("api", "batch", "webhooks", "precision", "precision_load", "drift", "scale", "metrics", "calendar")
    return [k for k in scenarios if k in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("command", nargs="?", default="run", choices=["run", "report", "merge"])
    parser.add_argument(
        "results",
        nargs="*",
        help="report: the results file (default: the newest); merge: OUT IN... (later files win per scenario)",
    )
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios: api,batch,webhooks,precision,precision_load,drift,scale,metrics,calendar",
    )
    args = parser.parse_args(argv)

    if args.command == "report":
        from bench import report

        path = Path(args.results[0]) if args.results else report.newest_results(RESULTS_DIR)
        print(report.write(path))
        return 0
    if args.command == "merge":
        # Scenarios measured in separate runs (e.g. the long scale scenario on its own) into one file.
        out_path, *inputs = (Path(p) for p in args.results)
        merged: dict[str, Any] = {}
        for path in inputs:
            part = json.loads(path.read_text())
            merged.update(part)
            merged.setdefault("runs_merged", []).append(
                {"file": path.name, "started_at": part["started_at"], "scenarios": _scenarios(part)}
            )
        merged["duration_s"] = sum(json.loads(p.read_text()).get("duration_s", 0) for p in inputs)
        out_path.write_text(json.dumps(merged, indent=1, default=str))
        print(f"merged: {out_path}")
        return 0

    env = bench_env()
    setup(env)
    from bench import harness, report

    WORK_DIR.mkdir(parents=True, exist_ok=True)
    profile = harness.PROFILES[args.profile]
    if os.environ.get("BENCH_BATCH"):
        # e.g. BENCH_BATCH="SimpleWorker:2:1:2000" (class:workers:repetitions:orders, comma-separated):
        # one batch configuration measured on its own while tuning.
        configs = [part.split(":") for part in os.environ["BENCH_BATCH"].split(",")]
        profile = replace(profile, batch_configs=[(c, int(w), int(r), int(n)) for c, w, r, n in configs])
    if os.environ.get("BENCH_METRICS"):
        # e.g. BENCH_METRICS="3:1000" (on/off pairs:orders in the batch) for the metrics scenario.
        pairs, orders = (int(x) for x in os.environ["BENCH_METRICS"].split(":"))
        profile = replace(profile, metrics_repeats=pairs, metrics_batch_orders=orders)
    only = [s for s in args.only.split(",") if s] or None
    began = time.monotonic()
    suffix = "" if args.profile == "full" else f"-{args.profile}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d", time.gmtime())
    # Only a complete full run is a result worth keeping in the repository.
    out = RESULTS_DIR / f"{date}.json"
    if only or args.profile != "full":
        out = WORK_DIR / f"{date}{suffix}{'-' + '-'.join(only) if only else ''}.json"

    def save(results: dict[str, Any]) -> None:
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=1, default=str))
        tmp.replace(out)

    results: dict[str, Any] = harness.run(profile, env, WORK_DIR, only=only, checkpoint=save)
    save(results)
    print(f"results: {out} ({time.monotonic() - began:.0f}s)")
    # Only a full run is published as docs/BENCHMARKS.md; a quick run renders next to its results.
    doc = report.write(out, publish=args.profile == "full" and not only)
    print(f"report: {doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
