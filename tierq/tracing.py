"""OpenTelemetry tracing (``tierq[otel]``, on with ``TIERQ_TRACING=true``; the exporter is
OTLP, configured by the standard ``OTEL_*`` variables).

Spans: one per HTTP request (continuing the caller's ``traceparent``), one around each
submission's commit, one per task attempt. The W3C ``traceparent`` current at submission is
stored with each task, so the attempt's span joins the submitter's trace on whichever replica
runs it.

What must stay true: with tracing off nothing here is imported from OpenTelemetry and the hot
paths pay one module attribute read (``ENABLED``); a span is never left open (context
managers only); tracing never changes an outcome (an error in it is not raised into a task).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

ENABLED = False
_tracer: Any = None
_propagator: Any = None
_kinds: Any = None  # opentelemetry.trace.SpanKind
_error: Any = None  # opentelemetry.trace.Status(StatusCode.ERROR, ...)


def setup(enabled: bool, provider: Any = None) -> None:
    """Turn tracing on (or off). ``provider``: a TracerProvider to use (tests give one with
    an in-memory exporter); else one with a batching OTLP exporter. ImportError names the
    extra when OpenTelemetry is not installed."""
    global ENABLED, _tracer, _propagator, _kinds, _error
    if not enabled:
        ENABLED = False
        return
    try:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        raise ImportError("TIERQ_TRACING needs OpenTelemetry: pip install 'tierq[otel]'") from None
    if provider is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("OTEL_SERVICE_NAME", "tierq")
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = provider.get_tracer("tierq")
    _propagator = TraceContextTextMapPropagator()
    _kinds = trace.SpanKind
    _error = lambda text: trace.Status(trace.StatusCode.ERROR, text)  # noqa: E731
    ENABLED = True


@contextlib.contextmanager
def server_span(method: str, route: str, headers: Mapping[str, str]) -> Iterator[Any]:
    """An HTTP request's span, a child of the caller's ``traceparent`` if it sent one."""
    parent = _propagator.extract(carrier={"traceparent": headers.get("traceparent", "")})
    attributes = {"http.request.method": method, "http.route": route}
    with _tracer.start_as_current_span(
        f"{method} {route}", context=parent, kind=_kinds.SERVER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """An internal span under the current one (a no-op when tracing is off)."""
    if not ENABLED:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def traceparent() -> str | None:
    """The W3C traceparent of the current span (None: tracing off, or no span)."""
    if not ENABLED:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def sampled(parent: str | None) -> bool:
    """Whether an attempt of a task submitted under ``parent`` may be recorded: not when the
    submission's trace was sampled out (bit 0 of its trace flags clear; other bits, such as
    the "random" flag 02, say nothing of sampling), the case of most tasks under a ratio
    sampler; skipping the span then costs nothing per task."""
    if parent is None:
        return True
    try:
        return bool(int(parent[-2:], 16) & 1)
    except ValueError:
        return True


@contextlib.contextmanager
def task_span(
    type_name: str, task_id: str, queue: str, attempt: int, parent: str | None, node: str
) -> Iterator[Any]:
    """One attempt of a task, in the trace of the request that submitted it."""
    context = _propagator.extract(carrier={"traceparent": parent}) if parent else None
    attributes = {
        "tierq.task.id": task_id,
        "tierq.task.type": type_name,
        "tierq.task.queue": queue,
        "tierq.task.attempt": attempt,
        "tierq.node": node,
    }
    with _tracer.start_as_current_span(
        f"tierq.task {type_name}", context=context, kind=_kinds.CONSUMER, attributes=attributes
    ) as current:
        yield current


def finished(current: Any, state: str, error: str | None) -> None:
    """Mark an attempt's span with its outcome (an error status when it failed)."""
    current.set_attribute("tierq.task.state", state)
    if error is not None and state != "succeeded":
        current.set_status(_error(error[:200]))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span's ``traceparent`` to outgoing request headers (tracing on)."""
    if ENABLED and "traceparent" not in headers:
        _propagator.inject(headers)
