"""One trace from the producer's span to the worker's execution span, across the server."""

from __future__ import annotations

import asyncio

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from appliance import AsyncClient, Worker


async def test_worker_span_continues_the_producers_trace(server) -> None:  # type: ignore[no-untyped-def]
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("test.producer")

    async with AsyncClient(server.address) as client:
        with tracer.start_as_current_span("place order") as producer_span:
            await client.enqueue("traced", {"order": 1}, id="tr-1")
        untraced_id = await client.enqueue("traced", {"order": 2}, id="tr-2")
    producer_trace = producer_span.get_span_context().trace_id

    seen: list[int] = []
    worker = Worker(server.address, concurrency=2)

    @worker.task("traced")
    async def handle(task):  # type: ignore[no-untyped-def]
        seen.append(trace.get_current_span().get_span_context().trace_id)

    runner = asyncio.create_task(worker.run_async())
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.05)
    worker.stop()
    await runner

    spans = {
        s.attributes["messaging.message.id"]: s
        for s in exporter.get_finished_spans()
        if s.name == "traced process"
    }
    assert spans["tr-1"].context.trace_id == producer_trace
    assert (
        spans["tr-1"].parent is not None
        and spans["tr-1"].parent.span_id == producer_span.get_span_context().span_id
    )
    assert spans[untraced_id].context.trace_id != producer_trace  # no context sent: a new trace
    assert producer_trace in seen  # the handler runs inside the execution span
