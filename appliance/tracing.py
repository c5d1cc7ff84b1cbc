"""OpenTelemetry traces from Enqueue to execution, optional: `pip install 'atp[otel]'`.

The producer's trace context travels as the W3C `traceparent` gRPC metadata of Enqueue; the
server keeps it with the task; the worker's execution span continues it, so one trace shows
enqueue -> wait -> execute across processes, one execution span per attempt. Without the
opentelemetry packages, or with no tracer provider configured, all of this is a no-op.
The built-in roles configure the SDK from the standard OTEL_* environment variables (the
only environment atp reads outside config.py, because the OpenTelemetry SDK defines it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from appliance.model import Task

try:
    from opentelemetry import propagate, trace
except ImportError:  # the otel extra is not installed: tracing is off
    propagate = trace = None  # type: ignore[assignment]

TRACED_RPCS = frozenset({"Enqueue", "EnqueueBatch"})


def outgoing(rpc: str) -> list[tuple[str, str]]:
    """Metadata carrying the caller's current trace context, for the calls that create tasks."""
    if propagate is None or rpc not in TRACED_RPCS:
        return []
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(k, v) for k, v in carrier.items() if k in ("traceparent", "tracestate")]


def current_traceparent() -> str:
    """The caller's current span as a W3C `traceparent`, or "" when there is none: what
    `outgoing` sends, at the cost of one context lookup (the enqueue stream asks per call)."""
    if trace is None:
        return ""
    span = trace.get_current_span().get_span_context()
    if not span.is_valid:
        return ""
    return f"00-{span.trace_id:032x}-{span.span_id:016x}-{int(span.trace_flags):02x}"


NO_SPAN = contextlib.nullcontext()


def enabled() -> bool:
    """Whether spans are recorded now (asking costs an environment lookup in OpenTelemetry:
    the Worker asks once per run, not per task)."""
    return trace is not None and _configured()


def execution(task: Task) -> contextlib.AbstractContextManager[Any]:
    """The span of one execution attempt, a child of the producer's span when it sent one
    (a shared no-op when tracing is off)."""
    return _span(task) if enabled() else NO_SPAN


@contextlib.contextmanager
def _span(task: Task) -> Iterator[None]:
    parent = propagate.extract({"traceparent": task.traceparent}) if task.traceparent else None
    tracer = trace.get_tracer("atp.worker")
    attributes: dict[str, Any] = {
        "messaging.system": "atp",
        "messaging.destination.name": task.topic,
        "messaging.message.id": task.id,
        "atp.attempt": task.attempt,
    }
    with tracer.start_as_current_span(
        f"{task.topic} process", context=parent, kind=trace.SpanKind.CONSUMER, attributes=attributes
    ):
        yield


_NO_OP_PROVIDERS = frozenset({"ProxyTracerProvider", "NoOpTracerProvider"})


def _configured() -> bool:
    """Whether a real tracer provider is set (else spans are no-ops: skip their cost)."""
    return type(trace.get_tracer_provider()).__name__ not in _NO_OP_PROVIDERS


def configure_from_env() -> bool:
    """Set up the SDK with an OTLP exporter when OTEL_* asks for it (and the packages are
    installed). Returns whether tracing is on."""
    wanted = os.environ.get("OTEL_TRACES_EXPORTER", "") not in ("", "none") or bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
    if not wanted or trace is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        return False
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
