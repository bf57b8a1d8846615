"""GET /metrics: the token guard, and the counts the engine, repair and the HTTP middleware record
(in this process, with the real database, Redis, rq-scheduler step and a burst RQ worker)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import transaction
from django.test import Client
from django.urls import resolve
from django.utils import timezone

from orders import engine, jobqueue, metrics, repair, services
from orders.models import Execution, Order
from scheduler_site.middleware import view_label
from tests.conftest import make_user
from tests.engine_helpers import enqueue_due, run_until
from tests.metrics_helpers import Scrape

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "a-metrics-token-for-tests-0123456789"


@pytest.fixture(autouse=True)
def _metrics_on(settings: Any) -> Iterator[None]:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ENABLED = True
    metrics.discard_pending()  # counts an earlier test left unwritten (its Redis was flushed)
    yield
    metrics.discard_pending()


def scrape(client: Client | None = None) -> Scrape:
    response = (client or Client()).get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return Scrape(response.content.decode())


def whole_second(offset: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=offset)).replace(microsecond=0)


def create(**fields: Any) -> Order:
    fields.setdefault("order_name", "metrics order")
    fields.setdefault("schedule_time", whole_second(1))
    return services.order_create(user=make_user(), definition=services.OrderDefinition(**fields))


def reload(order: Order) -> Order:
    return Order.objects.get(pk=order.pk)


# --- the guard ----------------------------------------------------------------------------------------


def test_metrics_is_a_404_when_no_token_is_configured(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert Client().get("/metrics").status_code == 404
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404
    assert Client().post("/metrics").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_metrics_refuses_a_missing_or_wrong_token_with_401(header: str | None) -> None:
    extra: dict[str, Any] = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = Client().get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"scheduler_" not in response.content


def test_metrics_answers_the_text_format_uncached_with_the_right_token() -> None:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response["Cache-Control"] == "no-store"
    result = Scrape(response.content.decode())
    assert result.value("scheduler_scheduled_orders") == 0
    assert result.value("scheduler_due_backlog") == 0
    assert result.value("scheduler_workers_alive") == 0
    # No scheduler has ever written a heartbeat here.
    assert result.value("scheduler_heartbeat_age_seconds") == float("inf")
    for source in ("redis_counters", "database", "redis"):
        assert result.value("scheduler_metrics_source_up", source=source) == 1


def test_post_to_metrics_is_refused() -> None:
    assert Client().post("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 405


# --- what the engine and repair count --------------------------------------------------------------------


def test_a_failed_then_retried_then_successful_run_is_counted_once_each(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.fail_first_attempt"
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 1
    order = create()
    run_until(lambda: reload(order).status == "completed", timeout=20)
    result = scrape()
    assert result.value("scheduler_executions_total", status="retried") == 1
    assert result.value("scheduler_executions_total", status="succeeded") == 1
    assert result.total("scheduler_executions_total", status="failed") == 0
    # Lateness is observed for the first attempt only, and matches the row.
    (run,) = Execution.objects.filter(order=order)
    assert run.started_at is not None
    assert result.value("scheduler_start_lateness_seconds_count") == 1
    lateness = result.value("scheduler_start_lateness_seconds_sum")
    assert lateness == pytest.approx((run.started_at - run.scheduled_for).total_seconds(), abs=0.002)
    assert result.value("scheduler_start_lateness_seconds_bucket", le="+Inf") == 1


def test_an_order_failing_for_good_is_counted_failed_once(settings: Any) -> None:
    settings.ORDER_EXECUTOR = "tests.faults.executors.always_fail"
    settings.ORDER_MAX_ATTEMPTS = 2
    settings.ORDER_RETRY_BASE_DELAY_SECONDS = 1
    order = create()
    run_until(lambda: reload(order).status == "failed", timeout=20)
    result = scrape()
    assert result.value("scheduler_executions_total", status="failed") == 1
    assert result.value("scheduler_executions_total", status="retried") == 1
    assert result.total("scheduler_executions_total", status="succeeded") == 0


def test_skipped_occurrences_are_counted_as_the_history_shows_them() -> None:
    start = whole_second(1)
    order = create(
        schedule_time=start, is_recurring=True, repeat_interval=60, repeat_unit="seconds", misfire_policy="skip"
    )
    run_until(lambda: reload(order).executions_count == 1, timeout=10)
    with time_machine.travel(start + timedelta(seconds=305), tick=True):
        run_until(lambda: Execution.objects.filter(order=order, status="skipped").exists(), timeout=10)
    skipped = Execution.objects.filter(order=order, status="skipped").count()
    assert skipped == 5
    assert scrape().value("scheduler_executions_total", status="skipped") == skipped


def test_an_outcome_whose_transaction_rolls_back_is_not_counted() -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        metrics.count_attempt(status="succeeded", first_attempt_lateness=0.1)
        raise RuntimeError("rolled back")
    with transaction.atomic():
        metrics.count_attempt(status="succeeded", first_attempt_lateness=0.2)
    result = scrape()
    assert result.value("scheduler_executions_total", status="succeeded") == 1
    assert result.value("scheduler_start_lateness_seconds_count") == 1
    assert result.value("scheduler_start_lateness_seconds_bucket", le="0.1") == 0
    assert result.value("scheduler_start_lateness_seconds_bucket", le="0.25") == 1


def test_recovered_runs_and_reconcile_repairs_are_counted() -> None:
    order = create()
    time.sleep(1.1)
    taken = engine.occurrence_take(order_id=order.pk, version=order.schedule_version, grid_index=1)
    assert taken is not None  # a worker took it and died
    Execution.objects.filter(pk=taken.execution_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    other = create(schedule_time=whole_second(3600))
    jobqueue.cancel(reload(other).job_id)  # Redis lost this order's job
    jobqueue.schedule_execution(job_id="order-999999-orphan", execution_id=999999, attempt=1, due=None)
    report = repair.reconcile()
    # Orphans: the planted job, and the taken order's own job still in rq-scheduler's set.
    assert (report.recovered_abandoned, report.scheduled, report.removed_orphans) == (1, 1, 2)
    result = scrape()
    assert result.value("scheduler_recovered_runs_total") == 1
    assert result.value("scheduler_reconcile_repairs_total", kind="scheduled") == 1
    assert result.value("scheduler_reconcile_repairs_total", kind="orphan_removed") == 2
    assert result.value("scheduler_reconcile_repairs_total", kind="requeued") == 0
    # The recovered attempt was the order's first: it failed (worker lost) and is retried.
    assert result.value("scheduler_executions_total", status="retried") == 1


def test_gauges_show_the_backlog_and_the_scheduled_orders() -> None:
    due = [create(schedule_time=whole_second(1)) for _ in range(3)]
    create(schedule_time=whole_second(3600))
    time.sleep(1.5)
    result = scrape()  # no worker: the three are due and waiting
    assert result.value("scheduler_scheduled_orders") == 4
    assert result.value("scheduler_orders", status="scheduled") == 4
    assert result.value("scheduler_due_backlog") == 3
    oldest = min(t for o in due if (t := reload(o).next_run_at) is not None)
    age = (timezone.now() - oldest).total_seconds()
    assert result.value("scheduler_oldest_due_age_seconds") == pytest.approx(age, abs=0.5)
    run_until(lambda: all(reload(o).status == "completed" for o in due), timeout=10)
    result = scrape()
    assert result.value("scheduler_due_backlog") == 0
    assert result.value("scheduler_oldest_due_age_seconds") == 0
    assert result.value("scheduler_scheduled_orders") == 1
    assert result.value("scheduler_orders", status="completed") == 3


def test_http_requests_are_counted_by_view_not_by_url(alice_api: Any, alice: Any) -> None:
    order = create(schedule_time=whole_second(3600))
    Order.objects.filter(pk=order.pk).update(user=alice)
    for _ in range(3):
        assert alice_api.get(f"/api/orders/{order.pk}").status_code == 200
    assert alice_api.get(f"/api/orders/{order.pk}/").status_code == 200  # the other spelling, the same view
    assert alice_api.get("/api/orders/999999").status_code == 404
    result = scrape()
    route = view_label(resolve(f"/api/orders/{order.pk}"))
    assert route == "orders.api.views.OrderDetailView"
    assert result.value("scheduler_http_requests_total", view=route, method="GET", status="200") == 4
    assert result.value("scheduler_http_requests_total", view=route, method="GET", status="404") == 1
    assert result.value("scheduler_http_request_duration_seconds_count", view=route, method="GET") == 5
    views = {dict(labels).get("view") for (_, labels) in result.samples}
    assert route in views
    assert not any(str(order.pk) in str(view) or "999999" in str(view) for view in views)


def test_nothing_is_recorded_when_metrics_are_disabled(settings: Any) -> None:
    settings.METRICS_ENABLED = False
    with transaction.atomic():
        metrics.count_attempt(status="succeeded", first_attempt_lateness=0.1)
    metrics.observe_http_request(view="x", method="GET", status=200, seconds=0.01)
    metrics.flush()
    assert jobqueue.connection().hgetall(metrics.REDIS_KEY) == {}


def test_a_forking_workers_work_horse_writes_its_counts_before_it_exits() -> None:
    from django.db import connections
    from rq import Worker

    order = create()
    time.sleep(1.2)
    enqueue_due()
    assert jobqueue.queued_count() == 1
    connections.close_all()  # the horse must not share this process's database connection
    # The work horse is a fork of this process and ends with os._exit: no atexit, no flusher thread.
    Worker([jobqueue.queue()], connection=jobqueue.connection()).work(burst=True, logging_level="WARNING")
    assert reload(order).status == "completed"
    metrics.discard_pending()  # nothing of this process's own: the count must come from the horse
    assert scrape().value("scheduler_executions_total", status="succeeded") == 1
