"""The registry of connected worker streams (docs/adr/0017-task-history-and-workers.md): each
server writes its streams' figures every few seconds into a HASH per stream that expires
unless rewritten, so a server that dies leaves nothing for long, and any server reads all.
Only this package imports redis."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.model import WorkerStream
from appliance.store import codec
from appliance.store.store import Store


def _fields(s: WorkerStream) -> dict[str, str]:
    values = dataclasses.asdict(s)
    values["topics"] = "\n".join(s.topics)
    return {k: str(v) for k, v in values.items()}


def _stream(raw: Mapping[Any, Any]) -> WorkerStream:
    get = raw.get
    return WorkerStream(
        stream_id=codec.text(get(b"stream_id")),
        worker_name=codec.text(get(b"worker_name")),
        server=codec.text(get(b"server")),
        peer=codec.text(get(b"peer")),
        topics=tuple(t for t in codec.text(get(b"topics")).split("\n") if t),
        credits=codec.number(get(b"credits")),
        in_flight=codec.number(get(b"in_flight")),
        connected_ms=codec.number(get(b"connected_ms")),
        last_seen_ms=codec.number(get(b"last_seen_ms")),
    )


class WorkerRegistry:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.keys = store.keys.workers

    async def report(self, streams: Sequence[WorkerStream], ttl_ms: int) -> None:
        """Write these streams' figures (one pipeline), each to expire after ttl_ms."""
        if not streams:
            return
        now = await self.store.now_ms()
        commands: list[tuple[Any, ...]] = []
        for s in streams:
            key = self.keys.stream(s.stream_id)
            commands += [("hset", key, None, None, _fields(s)), ("pexpire", key, ttl_ms)]
        commands.append(("zadd", self.keys.seen, {s.stream_id: now for s in streams}))
        await self.store.read("workers_report", *commands)

    async def forget(self, stream_id: str) -> None:
        """The stream ended: drop it at once."""
        await self.store.read(
            "workers_forget",
            ("delete", self.keys.stream(stream_id)),
            ("zrem", self.keys.seen, stream_id),
        )

    async def list(self, ttl_ms: int) -> tuple[int, list[WorkerStream]]:
        """(now ms, every stream written within ttl_ms), by worker name; older index entries
        are dropped."""
        now = await self.store.now_ms()
        _, ids = await self.store.read(
            "workers_list",
            ("zremrangebyscore", self.keys.seen, "-inf", f"({now - ttl_ms}"),
            ("zrange", self.keys.seen, 0, -1),
        )
        names = [codec.text(i) for i in ids]
        records = await self.store.read(
            "workers_list", *(("hgetall", self.keys.stream(i)) for i in names)
        )
        found = [_stream(r) for r in records if r]
        return now, sorted(found, key=lambda s: (s.worker_name, s.stream_id))
