"""Traces: one trace from the API request that created (or changed) an order to each execution of it,
with the SQL and Redis spans, recorded by the SDK's in-memory exporter. The request is served by the
real Django stack (DRF's client) and the job by a real RQ worker in burst mode; the trace context goes
from one to the other through the order row only, as between two processes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connections
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from common import tracing
from orders.models import Order
from tests.conftest import api_client_for
from tests.engine_helpers import run_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    # Connections opened before tracing started are traced too (configure wraps them).
    assert tracing.configure(exporter, service_name="tests")
    try:
        yield exporter
    finally:
        tracing.shutdown()
        connections.close_all()


def attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _whole_second(offset: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).replace(microsecond=0).isoformat()


def test_tracing_is_off_without_an_endpoint(monkeypatch: Any) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    assert tracing.configure() is False
    assert not tracing.enabled()
    assert tracing.current_traceparent() == ""


def test_one_trace_runs_from_the_create_request_to_each_execution(spans: InMemorySpanExporter, alice: Any) -> None:
    api = api_client_for(alice)
    body = {
        "order_name": "traced",
        "schedule_time": _whole_second(1),
        "is_recurring": True,
        "repeat_interval": 1,
        "repeat_unit": "seconds",
        "max_executions": 2,
    }
    response = api.post("/api/orders/", body, format="json")
    assert response.status_code == 201, response.content
    order = Order.objects.get(pk=response.json()["order_id"])
    (request_span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    trace_id = request_span.context.trace_id
    assert order.trace_context.split("-")[1] == f"{trace_id:032x}"

    run_until(lambda: Order.objects.get(pk=order.pk).status == "completed", timeout=15)
    finished = spans.get_finished_spans()
    in_trace = [s for s in finished if s.context.trace_id == trace_id]
    jobs = [s for s in in_trace if s.name == "run_occurrence"]
    executions = [s for s in in_trace if s.name == "execute_order"]
    assert len(jobs) >= 2  # one per occurrence (an early delivery may add a postponed one)
    assert len(executions) == 2
    assert sorted(attr(s, "execution.occurrence") for s in executions) == [1, 2]
    for execution in executions:
        # Each execution sits under a job span of this order's trace.
        assert execution.parent is not None
        assert execution.parent.span_id in {j.context.span_id for j in jobs}
    for job in jobs:
        assert job.parent is not None and job.parent.span_id == request_span.context.span_id
        assert attr(job, "order.id") == order.pk
    # The request and the jobs have their database and Redis spans in the same trace.
    job_ids = {j.context.span_id for j in jobs}
    sql = [s for s in in_trace if attr(s, "db.system") in ("sqlite", "mysql")]
    redis = [s for s in in_trace if attr(s, "db.system") == "redis"]
    assert any(parent_id(s) == request_span.context.span_id for s in sql)
    assert any(parent_id(s) in job_ids for s in sql)
    # Among them the job's read of the order row (the statements are recorded).
    assert any("orders_order" in str(attr(s, "db.statement")) for s in sql if parent_id(s) in job_ids)
    assert any(parent_id(s) == request_span.context.span_id for s in redis)
    assert any(parent_id(s) in job_ids for s in redis)
    # The worker's own polling of Redis, outside any job, starts no trace.
    roots = [s for s in finished if s.parent is None]
    assert all(s.kind != SpanKind.CLIENT for s in roots)


def test_an_update_moves_the_following_executions_to_the_update_request_trace(
    spans: InMemorySpanExporter, alice: Any
) -> None:
    api = api_client_for(alice)
    response = api.post(
        "/api/orders/", {"order_name": "to change", "schedule_time": _whole_second(3600)}, format="json"
    )
    order_id = response.json()["order_id"]
    spans.clear()
    response = api.patch(f"/api/orders/{order_id}", {"schedule_time": _whole_second(1)}, format="json")
    assert response.status_code == 200, response.content
    (update_span,) = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    run_until(lambda: Order.objects.get(pk=order_id).status == "completed", timeout=15)
    (execution,) = [s for s in spans.get_finished_spans() if s.name == "execute_order"]
    assert execution.context.trace_id == update_span.context.trace_id
