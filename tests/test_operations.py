"""The operator's kit: the alert rules pass promtool (syntax and their own unit tests), and the rules,
the Grafana dashboard and docs/OPERATIONS.md name only metrics /metrics really serves, and document
every one it serves."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from orders import metrics
from tests.metrics_helpers import Scrape

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "scheduler.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"
NAME = re.compile(r"\bscheduler_[a-z_]+\b")


def promtool() -> str:
    path = shutil.which("promtool")
    # Not a skip: `make test` installs it (the promtool target, Debian's prometheus package).
    assert path, "promtool is missing: run `make promtool` (or apt-get install prometheus)"
    return path


def test_alert_rules_pass_promtool_check() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 7 rules found" in done.stdout


def test_alert_rules_fire_and_stay_silent_as_their_unit_tests_say() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@pytest.fixture
def served(transactional_db: Any, settings: Any) -> set[str]:
    """Every sample name /metrics serves once each kind of count has been recorded."""
    settings.METRICS_TOKEN = "ops-token"
    metrics.discard_pending()
    with transaction.atomic():
        metrics.count_attempt(status="succeeded", first_attempt_lateness=0.1)
    metrics.count_repairs(scheduled=1, requeued=0, orphans=0)
    metrics.count_recovered(0)
    metrics.record_webhook_delivery(status="delivered", seconds=0.2)
    Client().get("/healthz")  # an HTTP request (the scrape's own is counted after it answers)
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer ops-token")
    assert response.status_code == 200
    return {name for name, _ in Scrape(response.content.decode()).samples}


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_rules_and_dashboard_name_only_served_metrics(served: set[str]) -> None:
    named = set(NAME.findall(RULES.read_text()))
    for expr in _dashboard_exprs():
        named.update(NAME.findall(expr))
    assert named, "no metric found in the rules or the dashboard"
    assert named - served == set()


def test_every_served_metric_is_documented(served: set[str]) -> None:
    documented = set(NAME.findall(OPERATIONS.read_text()))
    families = {re.sub(r"_(bucket|sum|count)$", "", name) for name in served}
    # A histogram is documented under its family name, a counter with its _total.
    assert families - documented == set()
