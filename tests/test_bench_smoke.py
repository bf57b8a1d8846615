"""The benchmark harness's code path with the smallest counts: real scheduler and worker processes,
the no-op ceiling, a batch of orders, precision, and the report with its plots. No timing is asserted
(that is what `make bench` is for); the outcomes are."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from bench import harness, report
from orders.models import Order
from orders.selectors import ORDER_ROW_COLUMNS
from tests import processes
from tests.conftest import make_user

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _context(tmp_path: Path) -> harness.Context:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "scheduler_site.settings",
        "DATABASE_URL": processes.test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "LOG_DIR": str(settings.LOG_DIR),
        "DEBUG": "true",
    }
    return harness.Context(
        profile=harness.SMOKE, env=env, work_dir=tmp_path, log=lambda line: print(f"{time.monotonic():.1f} {line}")
    )


def test_bench_batch_precision_and_report_run_end_to_end(tmp_path: Path, settings: Any) -> None:
    ctx = _context(tmp_path)
    results: dict[str, Any] = {
        "date": "2000-01-01",
        "started_at": "2000-01-01T00:00:00+00:00",
        "duration_s": 1.0,
        "profile": {"name": "smoke", "repeats": 1},
        "machine": harness.machine_info(),
        "settings": {
            "procfile": ["web: gunicorn ..."],
            "scheduler_poll_interval_s": 0.2,
            "executor": settings.ORDER_EXECUTOR,
            "conn_max_age": 0,
            "email": "console",
            "log_level": "INFO",
        },
    }
    results["batch"] = harness.scenario_batch(ctx)
    results["precision"] = harness.scenario_precision(ctx, workers=1)
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    results["webhooks"] = harness.scenario_webhooks(
        harness.Context(**{**ctx.__dict__, "env": {**ctx.env, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}})
    )

    by_kind = {run["kind"]: run for run in results["batch"]["runs"]}
    assert set(by_kind) == {"ceiling", "ceiling_scheduled", "product"}
    # Every no-op job and every order ran, none before its due time, none failed.
    assert by_kind["ceiling"]["done"] == 6
    assert by_kind["ceiling_scheduled"]["done"] == 6
    assert by_kind["product"]["done"] == 6
    assert by_kind["product"]["executions"] == 6
    assert by_kind["product"]["failed"] == 0
    assert by_kind["product"]["early_starts"] == 0
    assert by_kind["product"]["all_done_s"] >= 0
    assert by_kind["product"]["throughput_per_s"] > 0
    assert by_kind["product"]["worker_cpu_ms_per_job"] > 0
    assert results["batch"]["memory"][0]["process"] == "scheduler"
    assert all(m["rss_mib"] > 10 for m in results["batch"]["memory"])

    precision = results["precision"]["runs"][0]
    assert precision["executed"] == precision["n"] == 3
    assert precision["early_starts"] == 0
    assert len(precision["lateness_s"]) == 3

    plots = report._plots(results, tmp_path / "plots")
    assert (tmp_path / "plots" / plots["throughput"]).stat().st_size > 1000
    assert (tmp_path / "plots" / plots["lateness"]).stat().st_size > 1000
    # The webhook orders: each delivered to the receiver once, none failed.
    [webhooks] = results["webhooks"]["runs"]
    assert webhooks["ids_succeeded"] == webhooks["n"] == 6
    assert webhooks["ids_succeeded_more_than_once"] == 0 and webhooks["failed"] == 0
    assert webhooks["requests"] == 6
    text = report.render(results, plots, "")
    assert "## 2. Batch" in text and "## 3. Precision" in text
    assert "## 2b. Webhooks" in text and "each webhook-id succeeded exactly once" in text
    assert "| SimpleWorker | 1 |" in text
    assert "![throughput vs workers](throughput-vs-workers.png)" in text


def test_the_api_floor_writes_and_reads_real_order_rows(settings: Any) -> None:
    """The floor's raw INSERT and SELECT follow the schema (a NOT NULL column added without it made
    every floor create fail) and select the product's page columns."""
    settings.ROOT_URLCONF = "bench.floor"
    user = make_user()
    created = Client().post(f"/floor/create?user={user.pk}")
    assert created.status_code == 201
    assert Order.objects.get(pk=created.json()["id"]).user == user
    listed = Client().get(f"/floor/list?user={user.pk}").json()
    assert listed["count"] == 1
    assert tuple(listed["results"][0]) == ORDER_ROW_COLUMNS
