"""The console's reads and bulk actions over one topic (docs/adr/0017): its PENDING or RUNNING
tasks a page at a time, its dead letters through a filter, and requeue or purge of every dead
letter a filter matches in one call. Pages use the ListDeadLetters cursor ('<score>:<id>').
Only this package imports redis."""

from __future__ import annotations

import dataclasses
from typing import Any

from appliance.model import Task, TaskState
from appliance.store import codec
from appliance.store.store import DeadTask, Store

PREVIEW_BYTES = 200  # a listed task's payload is cut to this (GetTask has the whole one)
SCAN_CHUNK = 1000  # entries read per round trip while filtering
REDRIVE_SCAN_MAX = 10_000  # dead letters one RedriveDeadLetters call looks at, at most


@dataclasses.dataclass(frozen=True, slots=True)
class DeadFilter:
    """Dead letters whose last error contains `error` (any case), dead in [from_ms, until_ms)
    (0: no bound)."""

    error: str = ""
    from_ms: int = 0
    until_ms: int = 0

    def matches(self, letter: DeadTask) -> bool:
        if self.from_ms and letter.dead_at_ms < self.from_ms:
            return False
        if self.until_ms and letter.dead_at_ms >= self.until_ms:
            return False
        return self.error.lower() in letter.task.last_error.lower()


class Browse:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def _entries(self, zset: str, start_cursor: str, count: int) -> list[tuple[str, int]]:
        """Up to `count` (member, score) of a ZSET after the cursor '<score>:<member>' (the
        member's rank, or when it left, where its score would be)."""
        start = 0
        if start_cursor:
            score, _, last = start_cursor.partition(":")
            rank, before = await self.store.read(
                "browse", ("zrank", zset, last), ("zcount", zset, "-inf", f"({score}")
            )
            start = int(rank) + 1 if rank is not None else int(before)
        (reply,) = await self.store.read(
            "browse", ("zrange", zset, start, start + count - 1, False, True)
        )
        return [(codec.text(m), int(s)) for m, s in reply]

    async def tasks(
        self, topic: str, state: TaskState, limit: int, cursor: str = "", id_prefix: str = ""
    ) -> tuple[list[Task], str]:
        """A page of the topic's PENDING (by due time) or RUNNING (by lease deadline) tasks,
        only ids starting with `id_prefix`; payloads cut to PREVIEW_BYTES."""
        tk = self.store.keys.topic(topic)
        zset = tk.pending if state is TaskState.PENDING else tk.running
        scanned = await self._entries(zset, cursor, SCAN_CHUNK if id_prefix else limit)
        entries = [e for e in scanned if e[0].startswith(id_prefix)][:limit]
        if len(entries) == limit:  # a full page: go on after its last task
            last: tuple[str, int] | None = entries[-1]
        else:  # go on after what was looked at, if there may be more
            full = len(scanned) == (SCAN_CHUNK if id_prefix else limit)
            last = scanned[-1] if full and scanned else None
        replies = (
            await self.store.read(
                "browse",
                *(c for i, _ in entries for c in (("hgetall", tk.task(i)), ("hget", tk.new, i))),
            )
            if entries
            else []
        )
        found: list[Task] = []
        for n, (task_id, score) in enumerate(entries):
            fields, packed = replies[2 * n], replies[2 * n + 1]
            if fields:
                task = codec.task_from_hash(task_id, topic, fields)
            elif packed is not None:
                task = codec.task_from_new_record(task_id, topic, packed, score)
            else:
                continue  # it moved on between the two reads
            found.append(dataclasses.replace(task, payload=task.payload[:PREVIEW_BYTES]))
        return found, f"{last[1]}:{last[0]}" if last else ""

    async def dead(
        self, topic: str, wanted: DeadFilter, limit: int, cursor: str = ""
    ) -> tuple[list[DeadTask], str]:
        """Up to `limit` dead letters `wanted` matches, looking at SCAN_CHUNK at most; the
        cursor goes on after the last one looked at."""
        letters, next_cursor = await self.store.list_dead(topic, max(limit, SCAN_CHUNK), cursor)
        matched: list[DeadTask] = []
        for letter in letters:
            if wanted.matches(letter):
                matched.append(letter)
                if len(matched) == limit:
                    return matched, f"{letter.dead_at_ms}:{letter.task.id}"
        return matched, next_cursor

    async def redrive(
        self, topic: str, wanted: DeadFilter, requeue: bool, scan: int, cursor: str = ""
    ) -> tuple[int, int, str]:
        """Requeue (or purge) every dead letter `wanted` matches among the next `scan` ones:
        (how many moved, how many were looked at, the cursor to go on from; '' at the end)."""
        moved = scanned = 0
        while scanned < scan:
            letters, cursor = await self.store.list_dead(
                topic, min(SCAN_CHUNK, scan - scanned), cursor
            )
            scanned += len(letters)
            ids = [d.task.id for d in letters if wanted.matches(d)]
            if ids:
                act: Any = self.store.requeue_dead if requeue else self.store.purge_dead
                moved += await act(topic, ids)
            if not cursor:
                break
        return moved, scanned, cursor
