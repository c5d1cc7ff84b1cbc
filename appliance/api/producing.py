"""What every enqueue path shares (unary Enqueue, EnqueueBatch, EnqueueStream): admitting a
request (validation, the caller's topic permission), the caller's trace context, and counting
the tasks created. Imports grpc for the call context only; must not import redis."""

from __future__ import annotations

import collections
import re
from collections.abc import Sequence

import grpc

from appliance import metrics
from appliance.api import convert
from appliance.api.interceptors import current_principal
from appliance.auth import Principal
from appliance.config import Settings
from appliance.model import EnqueueResult, NewTask
from appliance.proto import queue_pb2 as pb

TRACEPARENT_RE = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def admit(
    request: pb.EnqueueRequest,
    settings: Settings,
    traceparent: str,
    principal: Principal | None = None,
) -> tuple[NewTask, bool]:
    """The validated task of an EnqueueRequest, if the caller (`principal`, else the current
    call's) may use its topic (else PermissionDenied), and whether its id was given by the
    client."""
    task, client_id = convert.new_task(request, settings, traceparent)
    (principal or current_principal()).check_topic(task.topic)
    return task, client_id


def count_enqueued(tasks: Sequence[NewTask], results: Sequence[EnqueueResult]) -> None:
    """atp_tasks_enqueued per topic; a duplicate of an existing id created nothing."""
    created = collections.Counter(t.topic for t, r in zip(tasks, results, strict=True) if r.created)
    for topic, count in created.items():
        metrics.ENQUEUED.labels(topic).inc(count)


def traceparent(context: grpc.aio.ServicerContext) -> str:
    """The caller's W3C `traceparent` metadata, kept with the task if well formed."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent":
            return valid_traceparent(value)
    return ""


def valid_traceparent(value: object) -> str:
    return value if isinstance(value, str) and TRACEPARENT_RE.fullmatch(value) else ""
