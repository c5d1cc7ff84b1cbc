"""One method per lifecycle move, each one atomic Lua script call (see lua/*.lua).

Every call here is safe to repeat (idempotent by task id, call token or lease token), so
connection errors are retried a few times (`run`, `run_many`, `read`, `call`: every Redis call
goes through one of them) and only then surface as Unavailable naming the operation;
the redis client's own blind retries are switched off (docs/ARCHITECTURE.md). A timeout is
never retried: Redis may be frozen, and the call may have run; it fails at once
(redis_timeout_ms, 2 s by default, or sooner when the caller's deadline, `CALL_DEADLINE`,
comes first). Only this package imports redis.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import functools
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ClusterError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from appliance.config import Settings, redis_cluster_nodes
from appliance.errors import InvalidArgument, NotFound, StaleLease, Unavailable
from appliance.keys import (
    DEPTH_COMMANDS,
    Keys,
    TopicKeys,
    depth,
    new_call_token,
    topic_in_id,
    topic_of_token,
)
from appliance.model import (
    EnqueueResult,
    NackResult,
    NewTask,
    Task,
    TaskEvent,
    TaskState,
    TopicStats,
)
from appliance.store import codec
from appliance.store.results import Refusal, error, refusal
from appliance.store.scripts import Client, NotReplicated, Scripts
from appliance.workflows.model import run_of_task

T = TypeVar("T")
CALL_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "atp_call_deadline", default=None
)
"""When the caller gives up (the event loop's clock): the API layer sets it from the gRPC
deadline, so a store call ends with the client's deadline instead of later."""
RETRY_DELAYS_S = (0.05, 0.2, 0.5)
SCAN_TOPICS_MAX = 64  # a token with at most this many topics: an id not indexed is looked for
KNOWN_FOR_S = 5.0  # a topic admitted this recently is not checked again (watchdog: FORGET_RECHECK)
DLQ_CHUNK = 1000
NONCE_BYTES = 6  # random bytes per lease token: 8 base64url characters (claim.lua NONCE_LEN)
UNBOUNDED_BYTES = 1 << 50  # claim's byte budget when the caller sets none


def connect(settings: Settings, url: str | None = None) -> Client:
    """An asyncio client without blind retries (the store retries what is safe): a Redis
    Cluster client for a `redis+cluster://` URL (docs/adr/0012), else a plain one."""
    timeout = settings.redis_timeout_ms / 1000
    url = url or settings.redis_url or "redis://127.0.0.1:6379/0"
    cluster = redis_cluster_nodes(url)
    if cluster is not None:
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in cluster.nodes],
            username=cluster.username,
            password=cluster.password,
            ssl=cluster.tls,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=settings.redis_max_connections,
            health_check_interval=30,
        )
    # A blocking pool: a call finding every connection busy waits for one (up to the socket
    # timeout) instead of failing "Too many connections" (with --durability replicated each
    # call holds its connection for a replica round trip: docs/adr/0013-durability.md).
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=timeout,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_error=[],
        health_check_interval=30,
    )
    return aioredis.Redis.from_pool(pool)


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    topic: str
    rows: list[codec.ClaimedRow]  # the leased tasks as claim.lua sent them
    now_ms: int
    next_due_in_us: int  # -1: nothing pending; else microseconds until the next task is due

    @property
    def tasks(self) -> list[Task]:
        return [codec.claimed_task(self.topic, row) for row in self.rows]


@dataclasses.dataclass(frozen=True, slots=True)
class Recovery:
    retried: int
    dead: int
    next_deadline_in_ms: int  # -1: nothing running


@dataclasses.dataclass(frozen=True, slots=True)
class DeadTask:
    task: Task
    dead_at_ms: int


def _claim_of(topic: str, reply: Any) -> Claim:
    return Claim(topic, codec.claimed_rows(reply[2:]), int(reply[0]), int(reply[1]))


def _group_by_topic(leases: Sequence[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """(id, lease token) pairs by the topic their token names; malformed tokens left out."""
    by_topic: dict[str, list[tuple[str, str]]] = {}
    for pair in leases:
        with contextlib.suppress(StaleLease):
            by_topic.setdefault(topic_of_token(pair[1]), []).append(pair)
    return by_topic


class Store:
    def __init__(self, redis: Client, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.keys = Keys(settings.key_prefix, sharded=isinstance(redis, RedisCluster))
        replicated = settings.durability == "replicated"
        self.scripts = Scripts(
            redis,
            replicas=1 if replicated else 0,
            replica_timeout_ms=settings.durability_timeout_ms,
        )
        self._known_topics: dict[str, float] = {}  # topic -> when admitted (monotonic s)

    async def close(self) -> None:
        await self.redis.aclose()

    async def ping(self) -> bool:
        return bool(await self.call("ping", self.redis.ping))

    # -- the one way to Redis: each retried, each error naming its operation ------------------

    async def run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """One call of script `name` (results.CODES; checked when the loader starts)."""
        return await _retrying(lambda: self.scripts.call(name, keys, args), name)

    async def run_many(self, op: str, build: Callable[[Any], None]) -> list[Any]:
        """The script calls `build` queues (Scripts.queue) in one pipeline."""
        return await _retrying(lambda: self.scripts.run_pipeline(self.redis, build), op)

    async def read(self, op: str, *commands: tuple[Any, ...]) -> list[Any]:
        """Plain commands, (name, *args) each, in one pipeline."""
        return await _retrying(lambda: _pipe(self.redis, *commands), op)

    async def call(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """Any other idempotent Redis call."""
        return await _retrying(call, op)

    # -- producers -------------------------------------------------------------------------

    async def enqueue(
        self,
        tasks: Sequence[NewTask],
        client_ids: Sequence[bool] = (),
        owner: str = "",
        index: bool = True,
    ) -> list[EnqueueResult]:
        """Create tasks (one script call per topic, all in one pipeline). Ids are per topic
        (ADR 0006): an id used in another topic neither blocks nor shadows this one.
        `client_ids` is not needed any more (every id the server did not make is indexed).
        `index=False`: workflow step tasks, whose run names their topic (`locate`).
        A topic not known yet must fit under max_topics and the `owner` token's
        max_topics_per_token, else TooLarge and nothing is written."""
        by_topic: dict[str, list[int]] = {}
        for i, task in enumerate(tasks):
            by_topic.setdefault(task.topic, []).append(i)
        await self.admit_topics(list(by_topic), owner)

        def build(pipe: Any) -> None:
            for topic, idx in by_topic.items():
                self._enqueue_call(pipe, topic, [tasks[i] for i in idx])

        replies = await self.run_many("enqueue", build) if tasks else []
        flags: list[int] = [0] * len(tasks)
        for idx, codes in zip(
            by_topic.values(), replies[len(replies) - len(by_topic) :], strict=True
        ):
            for i, code in zip(idx, codes, strict=True):
                flags[i] = int(code)
        # Only now, with the task written, is its id indexed: a call cut off before leaves a
        # task reachable by id and topic (and by id alone once the Enqueue is repeated), never
        # an index entry without its task (ADR 0006).
        made = zip(tasks, flags, strict=True)
        indexed = [(t, f) for t, f in made if index and topic_in_id(t.id) is None]
        await self._index_ids("live", list({(t.topic, t.id) for t, f in indexed if f in (1, 2)}))
        # A repeat that finds its task finished (0) indexes it too, as done: the first call's
        # indexing may have been cut off, and the task run and acked since.
        finished = list({(t.topic, t.id) for t, f in indexed if f == 0})
        await self._index_ids("found", finished)
        return [EnqueueResult(t.id, created=f == 1) for t, f in zip(tasks, flags, strict=True)]

    async def admit_topics(self, topics: Sequence[str], owner: str = "") -> None:
        """topic_add.lua for the topics this process has not admitted within KNOWN_FOR_S (not
        forever: a topic forgotten meanwhile must be known again)."""
        now = time.monotonic()
        known = self._known_topics
        unchecked = [t for t in topics if now - known.get(t, -math.inf) >= KNOWN_FOR_S]
        if not unchecked:
            return
        s, k = self.settings, self.keys
        reply = await self.run(
            "topic_add",
            [k.topics, k.topic_owner, k.topic_owned],
            [owner, s.max_topics, s.max_topics_per_token, *unchecked],
        )
        why, topic = refusal("topic_add", reply), codec.text(reply[1])
        if why is Refusal.OVER_MAX_TOPICS:
            raise error(
                why,
                f"topic {topic!r} is new and this appliance knows max_topics "
                f"({s.max_topics}) topics already (empty ones are forgotten after retention_ms)",
            )
        if why is Refusal.OVER_TOKEN_TOPICS:
            raise error(
                why,
                f"topic {topic!r} is new and token {owner!r} has made "
                f"max_topics_per_token ({s.max_topics_per_token}) topics already",
            )
        for t in unchecked:
            self._known_topics[t] = now

    def _enqueue_call(self, pipe: Any, topic: str, tasks: Sequence[NewTask]) -> None:
        """Queue one enqueue.lua call on `pipe`."""
        tk = self.keys.topic(topic)
        args: list[Any] = [self.keys.wake_channel, topic, tk.task_prefix]
        for t in tasks:
            meta = f"{t.delay_ms} {t.execute_at_ms} {t.max_retries} {t.traceparent}"
            args += [t.id, t.payload, meta]
        self.scripts.queue(pipe, "enqueue", [tk.pending, tk.new], args)

    async def cancel(
        self, task_id: str, topic: str = "", allowed: frozenset[str] | None = None
    ) -> tuple[str, bool]:
        """Cancel a pending task; returns its topic and whether this call canceled it (False:
        it was canceled before, nothing changed). `topic` and `allowed` as in `locate`."""
        topic = await self.locate(task_id, topic, allowed)
        tk = self.keys.topic(topic)
        reply = await self.run(
            "cancel", [tk.pending, tk.task(task_id), tk.new], [task_id, self.settings.retention_ms]
        )
        code, why = reply[0], refusal("cancel", reply)
        if why is Refusal.NOT_FOUND:
            raise error(why, f"no task with id {task_id!r}")
        if why is Refusal.NOT_PENDING:
            state = codec.text(reply[1])
            raise error(why, f"task {task_id!r} is {state}; only a PENDING task can be deleted")
        if code == 1:
            await self._expire_index([(topic, task_id)])
        return topic, code == 1

    async def get(
        self, task_id: str, topic: str = "", allowed: frozenset[str] | None = None
    ) -> Task:
        """The task; `topic` and `allowed` as in `locate`."""
        return (await self._read_task(task_id, topic, allowed))[0]

    async def history(
        self, task_id: str, topic: str = "", allowed: frozenset[str] | None = None
    ) -> tuple[Task, list[TaskEvent]]:
        """The task and its event history, oldest first (lua/lib/history.lua)."""
        task, hist = await self._read_task(task_id, topic, allowed)
        return task, codec.history(task, hist)

    async def _read_task(
        self, task_id: str, topic: str, allowed: frozenset[str] | None
    ) -> tuple[Task, bytes | None]:
        """The task and its raw `hist` field (None: none yet)."""
        topic = await self.locate(task_id, topic, allowed)
        tk = self.keys.topic(topic)
        fields, packed, due = await self.read(
            "get",
            ("hgetall", tk.task(task_id)),
            ("hget", tk.new, task_id),
            ("zscore", tk.pending, task_id),
        )
        if fields:
            return codec.task_from_hash(task_id, topic, fields), fields.get(b"hist")
        if packed is not None and due is not None:
            return codec.task_from_new_record(task_id, topic, packed, int(due)), None
        raise NotFound(f"no task with id {task_id!r}")

    async def locate(
        self, task_id: str, topic: str = "", allowed: frozenset[str] | None = None
    ) -> str:
        """The topic to look for task `task_id` in: `topic` when given, the one a server-made
        id names, else the one topic of the id index holding a task with the id. Only topics
        in `allowed` (None: all) count, and a topic outside it is NotFound with the very words
        of a missing id, so a tenant cannot tell another tenant's ids from none (ADR 0006). A
        token limited to a few topics also finds a task whose id is not indexed (an Enqueue cut
        off before its index was written) by looking in each of them.
        InvalidArgument when the id lives in several of the caller's topics."""
        missing = NotFound(f"no task with id {task_id!r}")
        named = topic_in_id(task_id)
        if topic or named:
            if (topic and named and topic != named) or (
                allowed is not None and (topic or named) not in allowed
            ):
                raise missing
            return topic or str(named)
        commands: list[tuple[Any, ...]] = [
            ("hkeys", self.keys.id_topics(task_id)),
            ("get", self.keys.id_index(task_id)),
        ]
        run_id = run_of_task(task_id)
        if run_id:  # a workflow step's task is not indexed: its run names its topic
            commands.append(("hget", self.keys.run(run_id), f"{task_id.split(':', 2)[2]}:topic"))
        index, legacy, *step = await self.read("locate", *commands)
        named_by = {codec.text(t) for t in [legacy, *step] if t}
        found = {codec.text(t) for t in index} | named_by
        topics = sorted(t for t in found if allowed is None or t in allowed)
        if len(topics) > 1:
            topics = await self._holding(task_id, topics)
        elif not topics and allowed is not None and len(allowed) <= SCAN_TOPICS_MAX:
            topics = await self._holding(task_id, sorted(allowed))  # not indexed (yet)
        if not topics:
            raise missing
        if len(topics) > 1:
            raise InvalidArgument(
                f"id {task_id!r} names tasks in topics {', '.join(topics)}: "
                "say which one with the request's topic"
            )
        return topics[0]

    async def _holding(self, task_id: str, topics: Sequence[str]) -> list[str]:
        """Those of `topics` that hold a record of task `task_id`."""
        commands: list[tuple[Any, ...]] = []
        for topic in topics:
            tk = self.keys.topic(topic)
            commands += [("exists", tk.task(task_id)), ("hexists", tk.new, task_id)]
        replies = await self.read("locate", *commands)
        return [t for n, t in enumerate(topics) if replies[2 * n] or replies[2 * n + 1]]

    # -- workers ---------------------------------------------------------------------------

    def new_call_token(self, topic: str) -> str:
        return new_call_token(topic)

    async def claim(
        self,
        topic: str,
        limit: int,
        lease_ms: int,
        call_token: str | None = None,
        max_bytes: int = 0,
        who: str = "",
    ) -> Claim:
        """Lease up to `limit` due tasks whose protobuf encoding fits in `max_bytes` together
        (0: no bound; the first task always fits). Retried with the same call token, so a lost
        reply returns the same tasks instead of leasing them to nobody. `who` leases: the
        history's lease detail (a worker stream, a Retrieve's caller)."""
        keys, args = self._claim_call(topic, limit, lease_ms, call_token, max_bytes, who)
        return _claim_of(topic, await self.run("claim", keys, args))

    def _claim_call(
        self,
        topic: str,
        limit: int,
        lease_ms: int,
        call_token: str | None,
        max_bytes: int,
        who: str,
    ) -> tuple[list[str], list[Any]]:
        """claim.lua's keys and arguments (a new call token unless one is given)."""
        tk = self.keys.topic(topic)
        call = call_token or self.new_call_token(topic)
        nonces = base64.urlsafe_b64encode(os.urandom(limit * NONCE_BYTES)).decode()
        keys = [tk.pending, tk.running, tk.claim(call), tk.new]
        args = [
            tk.task_prefix,
            limit,
            lease_ms,
            call,
            self.settings.claim_memo_ms,
            self.keys.lease_channel,
            topic,
            max_bytes or UNBOUNDED_BYTES,
            nonces,
            who,
        ]
        return keys, args

    async def ack(self, task_id: str, token: str, result: str = "") -> None:
        (error,) = await self.ack_many([(task_id, token)], [result])
        if error is not None:
            raise error

    async def ack_many(
        self, acks: Sequence[tuple[str, str]], results: Sequence[str] = ()
    ) -> list[Exception | None]:
        """Ack many leases in one round trip (one ack.lua call per topic); one result per ack
        (None = done). `results`: each task's output (kept on its record), '' or none = none."""
        outcome, _ = await self.ack_then_claim(acks, results)
        return outcome

    async def ack_then_claim(
        self,
        acks: Sequence[tuple[str, str]],
        results: Sequence[str] = (),
        claim: tuple[str, int, int, int, str] | None = None,
    ) -> tuple[list[Exception | None], Claim | None]:
        """ack_many, then `claim` (topic, limit, lease ms, byte budget, who: as claim() with a
        new call token) in the same round trip: the acks run first, so the claim may take the
        room they free. One pipeline, retried as a whole on a dropped connection (acks are
        idempotent per lease token, the claim returns what its call token holds)."""
        channel = self.keys.workflows.channel
        claimed: list[Any] = []
        claim_call = None
        if claim is not None:
            topic, limit, lease_ms, max_bytes, who = claim
            claim_call = self._claim_call(topic, limit, lease_ms, None, max_bytes, who)

        def then(pipe: Any) -> None:
            if claim_call is not None:
                self.scripts.queue(pipe, "claim", *claim_call)

        outcome = await self._per_topic(
            acks,
            "ack",
            lambda tk: ([tk.running], [self.settings.retention_ms, tk.task_prefix, channel]),
            functools.partial(_lease_error, "ack"),
            more=list(results) or [""] * len(acks),
            then=(then, claimed) if claim_call else None,
        )
        await self._expire_index(
            [
                (topic_of_token(token), task_id)
                for (task_id, token), e in zip(acks, outcome, strict=True)
                if e is None
            ]
        )
        return outcome, _claim_of(claim[0], claimed[0]) if claim and claimed else None

    async def nack(
        self,
        task_id: str,
        token: str,
        error: str,
        retry_after_ms: int = 0,
        dead_letter: bool = False,
    ) -> NackResult:
        tk = self.keys.topic(topic_of_token(token))
        s = self.settings
        reply = await self.run(
            "nack",
            [tk.pending, tk.running, tk.dlq, tk.task(task_id)],
            [
                task_id,
                token,
                error,
                retry_after_ms,
                int(dead_letter),
                s.backoff_base_ms,
                s.backoff_cap_ms,
                random.random(),
                self.keys.wake_channel,
                tk.topic,
                self.keys.workflows.channel,
            ],
        )
        problem = _lease_error("nack", reply[0], task_id)
        if problem is not None:
            raise problem
        return NackResult(dead_lettered=bool(reply[1]), next_execute_time_ms=codec.number(reply[2]))

    async def release(
        self, task_id: str, token: str, delay_ms: int = 0, why: str = ""
    ) -> NackResult:
        """Give a leased task back without counting the attempt; due again after delay_ms."""
        tk = self.keys.topic(topic_of_token(token))
        reply = await self.run(
            "release",
            [tk.pending, tk.running, tk.task(task_id)],
            [task_id, token, delay_ms, self.keys.wake_channel, tk.topic, why],
        )
        problem = _lease_error("release", reply[0], task_id)
        if problem is not None:
            raise problem
        return NackResult(dead_lettered=False, next_execute_time_ms=codec.number(reply[1]))

    async def extend(self, task_id: str, token: str, lease_ms: int) -> int:
        """New lease deadline (ms) = now + lease_ms."""
        (outcome,) = await self.extend_many([(task_id, token)], lease_ms)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def extend_many(
        self, leases: Sequence[tuple[str, str]], lease_ms: int
    ) -> list[int | Exception]:
        """Renew many leases in one round trip (one extend.lua call per topic): per lease its
        new deadline (ms), or the error (stale token, no such task)."""
        return await self._per_topic(
            leases,
            "extend",
            lambda tk: ([tk.running], [lease_ms, tk.task_prefix]),
            lambda code, task_id: _lease_error("extend", code, task_id) or int(code),
        )

    async def release_lost(self, leases: Sequence[tuple[str, str]], why: str) -> int:
        """Tasks of a worker that is gone: due again now with the attempt counted (or dead when
        their retries are spent); tokens that are no longer current are skipped. Returns how
        many moved."""
        moved = 0
        by_topic = _group_by_topic(leases)

        def build(pipe: Any) -> None:
            for topic, pairs in by_topic.items():
                tk = self.keys.topic(topic)
                args = [tk.task_prefix, self.keys.wake_channel, topic, why]
                args += [self.keys.workflows.channel, *(part for pair in pairs for part in pair)]
                self.scripts.queue(pipe, "release_lost", [tk.pending, tk.running, tk.dlq], args)

        if by_topic:
            replies = await self.run_many("release_lost", build)
            moved = sum(int(retried) + int(dead) for retried, dead in replies)
        return moved

    async def _per_topic(
        self,
        leases: Sequence[tuple[str, str]],
        script: str,
        keys_args: Callable[[TopicKeys], tuple[list[str], list[Any]]],
        decode: Callable[[Any, str], T],
        more: Sequence[str] | None = None,
        then: tuple[Callable[[Any], None], list[Any]] | None = None,
    ) -> list[T | Exception]:
        """Run a per-topic batch script over (id, lease token) pairs, one call per topic in one
        pipeline; one decoded result per pair, in order (a malformed token: its error).
        `more`: one more argument per pair, sent after it (ack's result). `then`: a builder
        that queues more calls after these in the same pipeline, and the list their replies
        are put in."""
        outcome: list[T | Exception] = []
        by_topic: dict[str, list[int]] = {}
        for i, (_, token) in enumerate(leases):
            try:
                by_topic.setdefault(topic_of_token(token), []).append(i)
                outcome.append(Unavailable("no reply"))  # replaced below
            except StaleLease as exc:
                outcome.append(exc)

        def build(pipe: Any) -> None:
            for topic, idx in by_topic.items():
                keys, args = keys_args(self.keys.topic(topic))
                pairs = [
                    part
                    for i in idx
                    for part in (leases[i] if more is None else (*leases[i], more[i]))
                ]
                self.scripts.queue(pipe, script, keys, [*args, *pairs])
            if then is not None:
                then[0](pipe)

        replies = await self.run_many(script, build) if by_topic or then else []
        if then is not None:
            then[1].extend(replies[len(by_topic) :])
        for idx, codes in zip(by_topic.values(), replies[: len(by_topic)], strict=True):
            for i, code in zip(idx, codes, strict=True):
                outcome[i] = decode(code, leases[i][0])
        return outcome

    # -- watchdog --------------------------------------------------------------------------

    async def recover_all(self, topics: Sequence[str], limit: int = 1000) -> dict[str, Recovery]:
        """recover_expired for many topics in one round trip."""

        def build(pipe: Any) -> None:
            for topic in topics:
                tk = self.keys.topic(topic)
                keys = [tk.pending, tk.running, tk.dlq]
                args = [tk.task_prefix, limit, self.keys.wake_channel, topic]
                args.append(self.keys.workflows.channel)
                self.scripts.queue(pipe, "recover_expired", keys, args)

        replies = await self.run_many("recover_expired", build) if topics else []
        return {
            t: Recovery(*(codec.number(v) for v in r)) for t, r in zip(topics, replies, strict=True)
        }

    async def recover_expired(self, topic: str, limit: int = 1000) -> Recovery:
        return (await self.recover_all([topic], limit))[topic]

    # -- dead letters and stats ------------------------------------------------------------

    async def list_dead(
        self, topic: str, limit: int, cursor: str = ""
    ) -> tuple[list[DeadTask], str]:
        """Oldest first. The cursor is '<dead at ms>:<id>' of the last letter returned."""
        tk = self.keys.topic(topic)
        start = 0
        if cursor:
            died, _, last_id = cursor.partition(":")
            rank, before = await self.read(
                "list_dead", ("zrank", tk.dlq, last_id), ("zcount", tk.dlq, "-inf", f"({died}")
            )
            start = int(rank) + 1 if rank is not None else int(before)

        async def page() -> list[tuple[bytes, float]]:
            reply = await self.redis.zrange(tk.dlq, start, start + limit - 1, withscores=True)
            return cast(list[tuple[bytes, float]], reply)

        entries = await self.call("list_dead", page)
        records = await self.read(
            "list_dead", *(("hgetall", tk.task(codec.text(i))) for i, _ in entries)
        )
        letters = [
            DeadTask(codec.task_from_hash(codec.text(i), topic, fields), int(score))
            for (i, score), fields in zip(entries, records, strict=True)
            if fields
        ]
        more = len(entries) == limit
        next_cursor = f"{int(entries[-1][1])}:{codec.text(entries[-1][0])}" if more else ""
        return letters, next_cursor

    async def requeue_dead(
        self, topic: str, ids: Sequence[str] = (), payload: str | None = None
    ) -> int:
        """Requeue dead letters (none given: all); `payload` replaces each one's payload."""
        tk = self.keys.topic(topic)
        edit = "0" if payload is None else "1" + payload
        fixed = [tk.task_prefix, self.keys.wake_channel, topic, DLQ_CHUNK, edit]
        moved = await self._dlq_chunks(tk, "requeue_dead", [tk.pending, tk.dlq], fixed, ids)
        return len(moved)

    async def purge_dead(self, topic: str, ids: Sequence[str] = ()) -> int:
        tk = self.keys.topic(topic)
        purged = await self._dlq_chunks(
            tk, "purge_dead", [tk.dlq], [tk.task_prefix, DLQ_CHUNK], ids
        )
        await self._index_ids("drop", [(topic, i) for i in purged if topic_in_id(i) is None])
        return len(purged)

    async def _dlq_chunks(
        self, tk: TopicKeys, script: str, keys: list[str], fixed: list[Any], ids: Sequence[str]
    ) -> list[str]:
        """Run a DLQ script over the given ids, or over the whole DLQ in bounded chunks."""
        done: list[str] = []
        if ids:
            for start in range(0, len(ids), DLQ_CHUNK):
                chunk = list(ids[start : start + DLQ_CHUNK])
                reply = await self.run(script, keys, [*fixed, *chunk])
                done += [codec.text(i) for i in reply]
            return done
        rounds = int(await self.call(script, lambda: self.redis.zcard(tk.dlq))) // DLQ_CHUNK + 1
        for _ in range(rounds):
            reply = await self.run(script, keys, fixed)
            done += [codec.text(i) for i in reply]
            if len(reply) < DLQ_CHUNK:
                break
        return done

    async def topics(self) -> list[str]:
        members = await self.call("topics", lambda: self.redis.smembers(self.keys.topics))
        return sorted(codec.text(m) for m in members)

    async def occupancy(self, topics: Sequence[str]) -> dict[str, tuple[int, int]]:
        """Per topic: (running tasks, 1 if anything is pending or dead else 0), in one round
        trip of two commands per topic."""
        commands: list[tuple[Any, ...]] = []
        for topic in topics:
            tk = self.keys.topic(topic)
            commands += [("zcard", tk.running), ("exists", tk.pending, tk.dlq)]
        replies = await self.read("occupancy", *commands) if commands else []
        return {
            t: (int(replies[2 * n]), min(int(replies[2 * n + 1]), 1)) for n, t in enumerate(topics)
        }

    async def marked_empty(self) -> set[str]:
        """The topics topic_forget.lua is timing (found empty, not forgotten yet)."""
        marked = await self.call("marked_empty", lambda: self.redis.hkeys(self.keys.topic_empty))
        return {codec.text(t) for t in marked}

    async def forget_topics(self, found_empty: Mapping[str, bool]) -> list[str]:
        """topic_forget.lua: forget the topics empty for the retention time; returns them."""
        if not found_empty:
            return []
        k = self.keys
        args: list[Any] = [self.settings.retention_ms]
        for topic, empty in found_empty.items():
            args += [topic, int(empty)]
        reply = await self.run(
            "topic_forget", [k.topics, k.topic_owner, k.topic_owned, k.topic_empty], args
        )
        return [codec.text(t) for t in reply]

    async def remember_topics(self, topics: Sequence[str]) -> None:
        """Know these topics again (tasks came after they were forgotten), whatever the limit."""
        if topics:
            await self.call("remember_topics", lambda: self.redis.sadd(self.keys.topics, *topics))

    async def now_ms(self) -> int:
        sec, usec = await self.call("now_ms", self.redis.time)
        return int(sec) * 1000 + int(usec) // 1000

    async def stats(self, topics: Iterable[str] = ()) -> tuple[int, list[TopicStats]]:
        names = list(topics) or await self.topics()
        now = await self.now_ms()
        commands = [
            ("execute_command", *c) for t in names for c in self.keys.topic(t).depth_commands(now)
        ]
        replies = await self.read("stats", *commands) if commands else []
        n = DEPTH_COMMANDS
        return now, [
            TopicStats(name, *depth(replies[i * n : i * n + n])) for i, name in enumerate(names)
        ]

    async def _expire_index(self, finished: Sequence[tuple[str, str]]) -> None:
        """Finished tasks (topic, id) keep their id index as long as their record (the
        retention time). Server-made ids and workflow steps' (ids no client may give) have no
        index: nothing to do (the common, fast case)."""
        indexed = [(t, i) for t, i in finished if topic_in_id(i) is None and not run_of_task(i)]
        await self._index_ids("done", indexed)

    async def _index_ids(self, mode: str, entries: Sequence[tuple[str, str]]) -> None:
        """One id_index.lua call per (topic, client-given id), in one round trip. 'done' and
        'drop' also let an index from before ADR 0006 expire with the record."""
        if not entries:
            return
        ttl = self.settings.retention_ms

        def build(pipe: Any) -> None:
            for topic, task_id in entries:
                self.scripts.queue(
                    pipe, "id_index", [self.keys.id_topics(task_id)], [mode, topic, ttl]
                )
                if mode != "live":
                    pipe.pexpire(self.keys.id_index(task_id), ttl if mode == "done" else 1)

        await self.run_many("id_index", build)


def _lease_error(script: str, code: Any, task_id: str) -> Exception | None:
    """The error of an ack, nack, release or extend code for one lease (None: done)."""
    why = refusal(script, int(code))
    if why is Refusal.NOT_FOUND:
        return error(why, f"no task with id {task_id!r}")
    if why is Refusal.STALE_LEASE:
        return error(
            why,
            f"lease token for task {task_id!r} is not the current one (expired and "
            "handed out again, already settled, or wrong)",
        )
    return None


async def _pipe(redis: Client, *commands: tuple[Any, ...]) -> list[Any]:
    async with redis.pipeline(transaction=False) as pipe:
        for name, *args in commands:
            getattr(pipe, name)(*args)
        return list(await pipe.execute())


async def _retrying(call: Callable[[], Awaitable[T]], op: str) -> T:
    """Run an idempotent store call, retrying connection errors a few times; a timeout (Redis
    frozen or overloaded) or the caller's deadline ends it at once with Unavailable. Every
    error names the operation `op` (a script's name, or the Store method reading)."""
    try:
        async with asyncio.timeout_at(CALL_DEADLINE.get()):
            return await _retry_connection_errors(call, op)
    except TimeoutError as exc:  # the caller's deadline (asyncio.timeout_at)
        raise Unavailable(f"{op}: redis did not answer within the call's deadline") from exc


async def _retry_connection_errors(call: Callable[[], Awaitable[T]], op: str) -> T:
    for delay in (*RETRY_DELAYS_S, None):
        try:
            return await call()
        except RedisTimeoutError as exc:
            raise Unavailable(f"{op}: redis did not answer in time: {exc}") from exc
        except NotReplicated as exc:  # durability replicated: not retried, the write ran
            raise Unavailable(f"{op}: {exc}") from exc
        except (RedisConnectionError, OSError, ClusterError, TryAgainError) as exc:
            # ClusterError: CLUSTERDOWN while a failed master's replica is promoted;
            # TryAgainError: a slot migrating. Both pass like a dropped connection.
            if delay is None:
                raise Unavailable(f"{op}: redis unavailable: {exc}") from exc
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["CALL_DEADLINE", "Claim", "DeadTask", "Recovery", "Store", "TaskState", "connect"]
