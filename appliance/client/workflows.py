"""The SDK's workflow builder: `Workflow("user-lifecycle").step(...)` makes the definition that
`client.put_workflow()` stores (docs/adr/0010-workflows.md). Pure protobuf building, no I/O.

Must not import redis, the store or the api package.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from appliance import times
from appliance.client.common import Payload, payload_text, to_ms
from appliance.errors import InvalidArgument
from appliance.proto import queue_pb2 as pb

Delay = float | int | dt.timedelta | str  # seconds, a timedelta, or text with a unit: '3d'


def delay_ms(value: Delay, field: str) -> int:
    if isinstance(value, str):
        try:
            return times.duration_ms(value, bare_ms=False)
        except times.BadValue as exc:
            raise InvalidArgument(f"{field}: {exc}") from None
    return to_ms(value, field)


class Workflow:
    """A workflow definition, built step by step; each call returns the builder.

    Workflow("user-lifecycle")
        .step("welcome", "emails", {"to": "{{ input.email }}"})
        .step("coupon", "coupons", "{{ steps.welcome.output }}", after="welcome", delay="3d")
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._steps: list[pb.WorkflowStep] = []

    def step(
        self,
        name: str,
        topic: str,
        payload: Payload = "",
        *,
        after: str | Iterable[str] = (),
        after_any: bool = False,
        delay: Delay = 0,
        max_retries: int | None = None,
        when: str = "",
        on_failure: bool = False,
        delay_until: str = "",
    ) -> Workflow:
        """A step whose task goes to `topic`; `payload` is a template (a dict or list is sent
        as JSON text, so its strings may hold {{ }}). `delay_until`: a template giving a time
        (ISO 8601 or epoch ms, e.g. '{{ input.remind_at }}') it does not start before."""
        parents = [after] if isinstance(after, str) else list(after)
        message = pb.WorkflowStep(
            name=name,
            topic=topic,
            payload=payload_text(payload),
            after=parents,
            after_any=after_any,
            delay_ms=delay_ms(delay, f"step {name!r} delay"),
            when=when,
            on_failure=on_failure,
            delay_until=delay_until,
        )
        if max_retries is not None:
            message.max_retries = max_retries
        self._steps.append(message)
        return self

    def signal(
        self,
        name: str,
        signal: str,
        *,
        after: str | Iterable[str] = (),
        timeout: Delay = 0,
        delay: Delay = 0,
    ) -> Workflow:
        """A step that waits for `client.signal_run(run_id, signal, payload)`; with a timeout
        it fails when none came in time (the on_failure step then runs)."""
        parents = [after] if isinstance(after, str) else list(after)
        self._steps.append(
            pb.WorkflowStep(
                name=name,
                signal=signal,
                after=parents,
                delay_ms=delay_ms(delay, f"step {name!r} delay"),
                timeout_ms=delay_ms(timeout, f"step {name!r} timeout"),
            )
        )
        return self

    def to_pb(self) -> pb.Workflow:
        return pb.Workflow(name=self.name, steps=self._steps)
