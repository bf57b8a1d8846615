"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT is set.

One trace runs from the API request that created or changed an order to each execution of it. The
request's context (a W3C `traceparent`) is stored on the order row in the change's own transaction
(Order.trace_context), not in the Redis job: reconcile re-creates jobs from the database, and a job
placed by a later poll or a retry still finds it there. The RQ job opens its span as a child of that
context, and everything below it is traced: Django's requests (opentelemetry-instrumentation-django),
every SQL statement (a Django execute wrapper on each connection: it works the same for MySQL and
SQLite, where the DB-API proxy of opentelemetry-instrumentation-dbapi would wrap each driver's
connection object), and every Redis command (opentelemetry-instrumentation-redis).

Redis and SQL calls made outside any request or job (a worker waiting for work, the scheduler's
polls) would each start a trace of their own every fraction of a second: those root client spans
are not sampled.

When the variable is unset nothing of OpenTelemetry is imported (about 0.5 s of start-up and a
little per call): every function here returns at once.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def enabled() -> bool:
    return _tracer is not None


def configure(exporter: SpanExporter | None = None, *, service_name: str | None = None) -> bool:
    """Start tracing in this process (once): to `exporter` if given (tests), else to the OTLP/HTTP
    endpoint of OTEL_EXPORTER_OTLP_ENDPOINT. Returns whether tracing is on."""
    global _provider, _tracer
    if _tracer is not None:
        return True
    if exporter is None and not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from django.db.backends.signals import connection_created
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    resource = Resource.create({"service.name": service_name or os.environ.get("OTEL_SERVICE_NAME", "order-scheduler")})
    provider = TracerProvider(resource=resource, sampler=_sampler())
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    # Our own provider, not the global one: a test can switch tracing off again.
    _provider, _tracer = provider, provider.get_tracer("scheduler")
    DjangoInstrumentor().instrument(tracer_provider=provider)
    RedisInstrumentor().instrument(tracer_provider=provider)
    connection_created.connect(_trace_queries_of, dispatch_uid="common.tracing")
    from django.db import connections

    for conn in connections.all(initialized_only=True):
        _trace_queries_of(sender=None, connection=conn)
    return True


def shutdown() -> None:
    """Flush and stop tracing in this process (tests; a process's exit flushes by itself)."""
    global _provider, _tracer
    if _provider is None:
        return
    from django.db import connections
    from django.db.backends.signals import connection_created
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    DjangoInstrumentor().uninstrument()
    RedisInstrumentor().uninstrument()
    connection_created.disconnect(dispatch_uid="common.tracing")
    for conn in connections.all(initialized_only=True):
        conn.execute_wrappers[:] = [w for w in conn.execute_wrappers if w is not _query_span]
    _provider.shutdown()
    _provider, _tracer = None, None


def _sampler() -> Any:
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoRootClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> Any:
            decision = Decision.DROP if kind == SpanKind.CLIENT else Decision.RECORD_AND_SAMPLE
            return SamplingResult(decision)

        def get_description(self) -> str:
            return "NoRootClientSpans"

    return ParentBased(root=NoRootClientSpans())


def _trace_queries_of(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _query_span not in connection.execute_wrappers:
        connection.execute_wrappers.append(_query_span)


def _query_span(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Mapping[str, Any]) -> Any:
    if _tracer is None:
        return execute(sql, params, many, context)
    from opentelemetry.trace import SpanKind

    connection = context["connection"]
    operation = sql.split(None, 1)[0].upper() if sql else "SQL"
    with _tracer.start_as_current_span(
        f"{operation} {connection.vendor}",
        kind=SpanKind.CLIENT,
        attributes={"db.system": connection.vendor, "db.statement": sql[:2000], "db.operation": operation},
    ):
        return execute(sql, params, many, context)


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" when tracing is off or nothing is traced)."""
    if _tracer is None:
        return ""
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get("traceparent", "")


@contextlib.contextmanager
def span(
    name: str,
    *,
    traceparent: Callable[[], str] | None = None,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[None]:
    """A span named `name`, child of the stored context `traceparent()` returns (read only when
    tracing is on) or else of the current span. A no-op when tracing is off."""
    if _tracer is None:
        yield
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    parent = None
    if traceparent is not None and (value := traceparent()):
        parent = extract({"traceparent": value})
    kind = SpanKind.CONSUMER if traceparent is not None else SpanKind.INTERNAL
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=dict(attributes or {})):
        yield
