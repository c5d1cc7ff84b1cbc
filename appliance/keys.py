"""Every Redis key and channel name atp uses, built in one place, and the one queue-depth read.

All keys of one topic share the hash tag `{<topic>}`, so a topic's keys live in one Redis
Cluster slot and every script touches one slot only; the scheduler's share
`{<prefix>/scheduler}` ('/' never occurs in a topic). Stdlib only: the supervisor imports it
too (its /metrics reads queue depth over raw RESP).
"""

from __future__ import annotations

import base64
import dataclasses
import os
import secrets
import threading
from typing import Any

from appliance.errors import StaleLease


@dataclasses.dataclass(frozen=True, slots=True)
class TopicKeys:
    prefix: str
    topic: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.topic}}}"

    @property
    def pending(self) -> str:
        """ZSET id -> due time (ms)."""
        return f"{self.base}:pending"

    @property
    def running(self) -> str:
        """ZSET id -> lease deadline (ms)."""
        return f"{self.base}:running"

    @property
    def new(self) -> str:
        """HASH id -> packed record ('<created> <max_retries>[ <traceparent>]\\n<payload>') of a
        PENDING task never leased yet: a field costs far less than a HASH per task (ADR 0004).
        claim.lua and cancel.lua move a record into its own task HASH."""
        return f"{self.base}:new"

    @property
    def dlq(self) -> str:
        """ZSET id -> time it died (ms)."""
        return f"{self.base}:dlq"

    @property
    def task_prefix(self) -> str:
        """Prefix of the task HASHes; scripts append the id (same hash tag)."""
        return f"{self.base}:task:"

    def task(self, task_id: str) -> str:
        return self.task_prefix + task_id

    def claim(self, call_token: str) -> str:
        """STRING remembering which ids one Retrieve call leased (for safe retries)."""
        return f"{self.base}:claim:{call_token}"

    def depth_commands(self, now_ms: int) -> list[list[str]]:
        """The commands reading this topic's depth at `now_ms` (Store.stats and the supervisor's
        /metrics send them, one pipeline); `depth()` reads their replies."""
        return [
            ["ZCARD", self.pending],
            ["ZCOUNT", self.pending, "-inf", str(now_ms)],
            ["ZCARD", self.running],
            ["ZCARD", self.dlq],
            ["ZRANGE", self.pending, "0", "0", "WITHSCORES"],
        ]


DEPTH_COMMANDS = 5  # len(TopicKeys.depth_commands(...))


def depth(replies: list[Any]) -> tuple[int, int, int, int, int]:
    """(pending, due, running, dead, due time of the oldest due task in ms or 0 when none is
    due) from the replies to one topic's `depth_commands`."""
    pending, due, running, dead, head = replies
    oldest = 0
    if head and due:  # [member, score] over raw RESP; [(member, score)] from redis-py
        oldest = int(float(head[0][1] if isinstance(head[0], list | tuple) else head[1]))
    return int(pending), int(due), int(running), int(dead), oldest


SERVER_ID_MARK = "~"  # never in a topic nor in a client-given id
SERVER_ID_RANDOM = 22  # characters: 16 random bytes (128 bits) in base64url


def new_task_id(topic: str) -> str:
    """A server-made id names its topic (`<topic>~<22 base64url chars>`), so Delete/GetTask/Ack
    find the task's keys without the id index; only client-given ids need `id_index`. Short,
    because every pending task holds its id twice (pending ZSET member and `new` field)."""
    return f"{topic}{SERVER_ID_MARK}{_RANDOM.token()}"


class _RandomPool:
    """16 random bytes a call from os.urandom read 4 KiB at a time (secrets.token_urlsafe
    makes a system call for each id, a cost EnqueueBatch and EnqueueStream pay per task).
    Each 16 bytes are handed out once, under a lock: threads never share an id, and a forked
    child drops the bytes it inherited, so parent and child never do either."""

    SIZE = 16
    READ = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data = b""
        self._at = 0

    def token(self) -> str:
        with self._lock:
            at = self._at
            if at + self.SIZE > len(self._data):
                self._data, at = os.urandom(self.READ), 0
            self._at = at + self.SIZE
            chunk = self._data[at : at + self.SIZE]
        return base64.urlsafe_b64encode(chunk)[:SERVER_ID_RANDOM].decode()

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._data, self._at = b"", 0


_RANDOM = _RandomPool()
os.register_at_fork(after_in_child=_RANDOM.forget)


def new_call_token(topic: str) -> str:
    """A Retrieve call's token, '<topic>/<random>': claim.lua makes each lease token of the call
    '<call token>.<n>.<nonce>', so a lease token names its topic."""
    return f"{topic}/{secrets.token_urlsafe(9)}"


def topic_of_token(token: str) -> str:
    """The topic a lease token names, so Ack/Nack/Extend need no id lookup; StaleLease for a
    token atp cannot have handed out."""
    topic, sep, _ = token.partition("/")
    if not sep or not topic:
        raise StaleLease("lease token is not one atp handed out")
    return topic


def topic_in_id(task_id: str) -> str | None:
    """The topic a server-made id names, or None for a client-given id."""
    topic, mark, rest = task_id.rpartition(SERVER_ID_MARK)
    return topic if mark and topic and len(rest) == SERVER_ID_RANDOM else None


@dataclasses.dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "atp"
    sharded: bool = False  # a Redis Cluster: the scheduler's channel is a shard channel

    def topic(self, topic: str) -> TopicKeys:
        return TopicKeys(self.prefix, topic)

    @property
    def scheduler(self) -> SchedulerKeys:
        return SchedulerKeys(self.prefix, self.sharded)

    @property
    def workflows(self) -> WorkflowKeys:
        return WorkflowKeys(self.prefix)

    @property
    def workers(self) -> WorkerKeys:
        return WorkerKeys(self.prefix)

    def run(self, run_id: str) -> str:
        """HASH: one workflow run and its steps (`<step>:<field>` fields), alone in its slot
        (hash tag `{run:<id>}`): every run script touches this one key (docs/adr/0010)."""
        return f"{self.prefix}:{{run:{run_id}}}:run"

    @property
    def topics(self) -> str:
        """SET of the known topics (for stats and the watchdog): added by Enqueue under the
        topic limits, forgotten once empty for the retention time (topic_forget.lua)."""
        return f"{self.prefix}:topics"

    @property
    def topic_owner(self) -> str:
        """HASH topic -> name of the token that made it (topic_add.lua). `{<prefix>:topics}`
        hashes like `<prefix>:topics`: the topic bookkeeping shares one cluster slot."""
        return f"{{{self.prefix}:topics}}:owner"

    @property
    def topic_owned(self) -> str:
        """HASH token name -> how many known topics it made (max_topics_per_token)."""
        return f"{{{self.prefix}:topics}}:owned"

    @property
    def topic_empty(self) -> str:
        """HASH topic -> when the watchdog first found it empty (ms; topic_forget.lua)."""
        return f"{{{self.prefix}:topics}}:empty"

    def id_topics(self, task_id: str) -> str:
        """HASH topic -> 'live' | 'done': the topics holding a task with this client-given id,
        so Delete and GetTask work with the id alone (server-made ids name their topic: see
        new_task_id). Ids are per topic (ADR 0006); lua/id_index.lua keeps it in step."""
        return f"{self.prefix}:ids:{task_id}"

    def id_index(self, task_id: str) -> str:
        """STRING client-given id -> topic, from before ids were per topic (ADR 0006): still
        read, so tasks enqueued before the upgrade stay reachable by id; no longer written."""
        return f"{self.prefix}:id:{task_id}"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel: '<topic> <due ms>' when a topic's earliest due time moves earlier."""
        return f"{self.prefix}:wake"

    @property
    def lease_channel(self) -> str:
        """Pub/sub channel: '<topic> <deadline ms>' when a topic's earliest lease deadline moves
        earlier, so watchdogs wake at the next deadline instead of polling."""
        return f"{self.prefix}:leases"


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerKeys:
    prefix: str
    sharded: bool = False  # on a Redis Cluster (docs/adr/0012)

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.prefix}/scheduler}}"

    @property
    def lease(self) -> str:
        """HASH holder, token, expires (ms): the leader's lease (expires with PEXPIREAT)."""
        return f"{self.base}:leader"

    @property
    def fence(self) -> str:
        """STRING counter: the last fencing token handed out."""
        return f"{self.base}:fence"

    @property
    def due(self) -> str:
        """ZSET schedule id -> next fire (ms), for schedules that are not paused."""
        return f"{self.base}:due"

    @property
    def ids(self) -> str:
        """SET of every schedule id."""
        return f"{self.base}:ids"

    @property
    def outbox(self) -> str:
        """HASH task id -> task JSON: ticks fired but not yet confirmed enqueued."""
        return f"{self.base}:outbox"

    @property
    def fired(self) -> str:
        """STRING counter: ticks fired in total."""
        return f"{self.base}:fired"

    def schedule(self, schedule_id: str) -> str:
        """HASH: one schedule's definition and state."""
        return f"{self.base}:schedule:{schedule_id}"

    @property
    def channel(self) -> str:
        """Pub/sub: '<id> <next ms>' when a schedule is written, so the leader re-plans. On a
        Redis Cluster a shard channel in the scheduler's slot (hash-tagged: lua/lib/wake.lua
        SPUBLISHes on it; the scheduler SSUBSCRIBEs on that slot's master, docs/adr/0012)."""
        return f"{self.base}:schedules" if self.sharded else f"{self.prefix}:schedules"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkflowKeys:
    """Workflow definitions and the run indexes, one slot (`{<prefix>/workflows}`; '/' never
    occurs in a topic). The runs themselves live in their own slots: Keys.run."""

    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.prefix}/workflows}}"

    @property
    def names(self) -> str:
        """HASH workflow name -> its latest version (absent: deleted or never put)."""
        return f"{self.base}:workflows"

    def versions(self, name: str) -> str:
        """HASH version -> definition JSON, and `next`: the last version handed out."""
        return f"{self.base}:workflow:{name}"

    @property
    def runs(self) -> str:
        """ZSET run id -> created (ms): for ListRuns; a hint (a run gone is skipped)."""
        return f"{self.base}:runs"

    @property
    def due(self) -> str:
        """ZSET run id -> when an advancer should look at it next (ms); a run leaves once
        finished. Written before the change it covers: a crash leaves a run looked at too
        often, never forgotten."""
        return f"{self.base}:due"

    @property
    def channel(self) -> str:
        """Pub/sub: a step task's id ('wf:<run>:<step>') when ack.lua finished it."""
        return f"{self.prefix}:workflows"


@dataclasses.dataclass(frozen=True, slots=True)
class WorkerKeys:
    """The registry of connected worker streams, one slot (`{<prefix>/workers}`; '/' never
    occurs in a topic), so any server's console lists every server's streams
    (docs/adr/0017-task-history-and-workers.md)."""

    prefix: str

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.prefix}/workers}}"

    @property
    def seen(self) -> str:
        """ZSET stream id -> when its server last wrote it (ms); a hint: an entry whose HASH
        expired is dropped when read."""
        return f"{self.base}:seen"

    def stream(self, stream_id: str) -> str:
        """HASH: one stream's figures, expiring unless its server rewrites it in time."""
        return f"{self.base}:stream:{stream_id}"
