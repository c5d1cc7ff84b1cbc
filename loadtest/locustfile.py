"""Locust users that speak atp's gRPC API. Every call is reported through locust's request
event (type "grpc", name = the RPC), so locust's statistics, CSV files and web UI work as for
HTTP.

- ProducerUser: Enqueue (weight 4) and EnqueueBatch (weight 1) of tasks due within
  --max-delay-ms.
- WorkerUser: long-poll Retrieve of up to --batch-size tasks, then one AckBatch.
- mixed: both classes at once (`locust -f loadtest/locustfile.py ProducerUser WorkerUser`).

    locust -f loadtest/locustfile.py --host 127.0.0.1:9090 [--topic T] [--token TOKEN]

`just load` (loadtest/load.py) runs it headless for a bounded time. Uses only the public API
(the generated stubs of proto/queue.proto); never appliance internals.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, between, events, task
from locust.env import Environment

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc

grpc_gevent.init_gevent()  # grpc's blocking calls yield to gevent's other greenlets

TASKS_DONE = {"enqueued": 0, "acked": 0}


def _options(parser: Any) -> None:
    parser.add_argument("--topic", default="load", help="topic to enqueue to and fetch from")
    parser.add_argument("--token", default="", help="bearer token (role-split deployments)")
    parser.add_argument("--max-delay-ms", type=int, default=2000, help="tasks due within this")
    parser.add_argument("--enqueue-batch", type=int, default=100, help="tasks per EnqueueBatch")
    parser.add_argument("--batch-size", type=int, default=100, help="tasks per Retrieve")
    parser.add_argument("--wait-ms", type=int, default=1000, help="Retrieve long-poll wait")
    parser.add_argument("--payload-bytes", type=int, default=100)


class Reporter(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Fires locust's request event for every unary call: its time, reply size and error."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        start = time.perf_counter()
        call = continuation(details, request)
        size, error = 0, None
        try:
            size = call.result().ByteSize()
        except grpc.RpcError as exc:
            error = exc
        self.environment.events.request.fire(  # type: ignore[no-untyped-call]  # locust
            request_type="grpc",
            name=str(details.method).rsplit("/", 1)[-1],
            response_time=(time.perf_counter() - start) * 1000,
            response_length=size,
            response=call,
            context={},
            exception=error,
        )
        return call


class AtpUser(User):
    """One gRPC channel per user, every call through the Reporter."""

    abstract = True
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        options = self.environment.parsed_options
        self.topic: str = options.topic if options else "load"
        token = options.token if options else ""
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.channel = grpc.intercept_channel(
            grpc.insecure_channel(self.host), Reporter(self.environment)
        )
        self.stub = pb_grpc.DelayQueueServiceStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    def option(self, name: str, default: int) -> int:
        options = self.environment.parsed_options
        return int(getattr(options, name, default)) if options else default


class ProducerUser(AtpUser):
    def request(self) -> pb.EnqueueRequest:
        return pb.EnqueueRequest(
            topic=self.topic,
            payload="p" * self.option("payload_bytes", 100),
            delay_ms=random.randint(0, self.option("max_delay_ms", 2000)),
        )

    @task(4)
    def enqueue(self) -> None:
        try:
            self.stub.Enqueue(self.request(), timeout=30, metadata=self.metadata)
            TASKS_DONE["enqueued"] += 1
        except grpc.RpcError:
            pass  # reported by the interceptor

    @task(1)
    def enqueue_batch(self) -> None:
        batch = [self.request() for _ in range(self.option("enqueue_batch", 100))]
        try:
            self.stub.EnqueueBatch(
                pb.EnqueueBatchRequest(requests=batch), timeout=30, metadata=self.metadata
            )
            TASKS_DONE["enqueued"] += len(batch)
        except grpc.RpcError:
            pass


class WorkerUser(AtpUser):
    @task
    def fetch_and_ack(self) -> None:
        wait_ms = self.option("wait_ms", 1000)
        request = pb.RetrieveRequest(
            topic=self.topic, batch_size=self.option("batch_size", 100), wait_ms=wait_ms
        )
        try:
            reply = self.stub.Retrieve(request, timeout=wait_ms / 1000 + 30, metadata=self.metadata)
            if reply.tasks:
                acks = [pb.AckRequest(id=t.id, lease_token=t.lease_token) for t in reply.tasks]
                self.stub.AckBatch(
                    pb.AckBatchRequest(acks=acks), timeout=30, metadata=self.metadata
                )
                TASKS_DONE["acked"] += len(acks)
        except grpc.RpcError:
            pass


def _summary(environment: Environment, **_: Any) -> None:
    """Tasks per second on top of locust's calls per second."""
    stats = environment.stats.total if environment.stats else None
    if stats is None or not stats.start_time or not stats.last_request_timestamp:
        return
    seconds = max(stats.last_request_timestamp - stats.start_time, 1e-9)
    print(
        f"atp tasks: {TASKS_DONE['enqueued']:,} enqueued ({TASKS_DONE['enqueued'] / seconds:,.0f}"
        f"/s), {TASKS_DONE['acked']:,} acked ({TASKS_DONE['acked'] / seconds:,.0f}/s) over "
        f"{seconds:.1f} s"
    )


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_summary)  # type: ignore[no-untyped-call]
