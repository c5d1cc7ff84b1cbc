"""Built-in executors for the worker role, configured per topic (`topics:` in the config):
`http` (POST the payload to a webhook), `python` (a module:function callable) and `command`
(a program reading the payload on stdin). Each builds a handler `(Task) -> None` that returns
on success and raises RetryTask / DeadLetterTask / any exception, as SDK handlers do.

Must not import redis or grpc: executors see tasks, never the queue.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from appliance.errors import ConfigError
from appliance.executors import command, http, python
from appliance.executors.spec import Handler, optional_positive

BUILDERS: dict[str, Callable[[str, Mapping[str, Any]], Handler]] = {
    "http": http.build,
    "python": python.build,
    "command": command.build,
}


@dataclasses.dataclass(frozen=True)
class TopicExecutor:
    topic: str
    kind: str
    handler: Handler
    concurrency: int | None  # None: the worker's default
    visibility_timeout_ms: int | None


def build_all(topics: Mapping[str, Any]) -> list[TopicExecutor]:
    """One executor per configured topic; a bad entry raises ConfigError naming its key."""
    from appliance import validation
    from appliance.errors import InvalidArgument

    out = []
    for topic, spec in topics.items():
        where = f"topics.{topic}"
        try:
            validation.topic(str(topic))
        except InvalidArgument as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where}: expected a mapping with an executor")
        kind = spec.get("executor")
        if kind not in BUILDERS:
            raise ConfigError(f"{where}.executor: {kind!r} is not one of {', '.join(BUILDERS)}")
        out.append(
            TopicExecutor(
                topic=str(topic),
                kind=kind,
                handler=BUILDERS[kind](where, spec),
                concurrency=optional_positive(spec, "concurrency", where),
                visibility_timeout_ms=optional_positive(spec, "visibility_timeout_ms", where),
            )
        )
    return out
