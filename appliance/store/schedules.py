"""The store side of schedules and scheduler leadership: one method per Lua script
(lua/leader_*.lua, lua/schedule_*.lua) plus plain reads, and the keys they use.

Every key lives under one hash tag, `{<prefix>/scheduler}` ('/' never occurs in a topic, so no
topic's keys can collide), so each script touches one Redis Cluster slot. A schedule travels as
its HASH fields (text -> text); appliance/scheduler/definitions.py owns their meaning. Only this
package imports redis; this module must not import the scheduler or grpc.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.errors import AlreadyExists, NotFound, WrongState
from appliance.store import codec
from appliance.store.store import Store, _pipe, _retrying

Fields = dict[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class SchedulerKeys:
    prefix: str

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
        """Pub/sub: '<id> <next ms>' when a schedule is written, so the leader re-plans."""
        return f"{self.prefix}:schedules"


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseReply:
    granted: bool  # True: the caller holds the lease under `token`
    holder: str
    token: int
    expires_ms: int  # Redis clock
    left_ms: int  # until the lease runs out (-2: it just did)


@dataclasses.dataclass(frozen=True, slots=True)
class LeaderInfo:
    holder: str  # "" when nobody leads
    token: int
    expires_ms: int
    ticks_fired: int


def _fields(flat: Sequence[Any]) -> Fields:
    return {codec.text(flat[i]): codec.text(flat[i + 1]) for i in range(0, len(flat), 2)}


def _hash(raw: Mapping[Any, Any]) -> Fields:
    return {codec.text(k): codec.text(v) for k, v in raw.items()}


class ScheduleStore:
    """Schedules and leadership on the same Redis client (and script registry) as `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = SchedulerKeys(store.settings.key_prefix)
        self._scripts = store.scripts

    async def now_ms(self) -> int:
        return await self.store.now_ms()

    # -- leadership ------------------------------------------------------------------------

    async def acquire(self, holder: str, ttl_ms: int) -> LeaseReply:
        """Take the lease if free (safe to retry: a holder gets its own lease back)."""
        k = self.keys
        reply = await _retrying(
            lambda: self._scripts.get("leader_acquire")(
                keys=[k.lease, k.fence], args=[holder, ttl_ms]
            )
        )
        granted, who, token, expires, left = reply
        return LeaseReply(
            bool(granted), codec.text(who), int(token), codec.number(expires), int(left)
        )

    async def renew(self, token: int, ttl_ms: int) -> int:
        """The new expiry (ms), or -1 (the lease expired) / -2 (another token holds it)."""
        script = self._scripts.get("leader_renew")
        return int(await _retrying(lambda: script(keys=[self.keys.lease], args=[token, ttl_ms])))

    async def release(self, token: int) -> bool:
        script = self._scripts.get("leader_release")
        return bool(await _retrying(lambda: script(keys=[self.keys.lease], args=[token])))

    async def leader(self) -> LeaderInfo:
        k = self.keys
        lease, fired = await _retrying(
            lambda: _pipe(self.redis, ("hgetall", k.lease), ("get", k.fired))
        )
        f = _hash(lease)
        return LeaderInfo(
            f.get("holder", ""),
            codec.number(f.get("token")),
            codec.number(f.get("expires")),
            codec.number(fired),
        )

    # -- definitions -----------------------------------------------------------------------

    async def put(
        self, mode: str, schedule_id: str, next_ms: int, fields: Mapping[str, str]
    ) -> Fields:
        """Write a definition: mode create (AlreadyExists if the id is taken), update (NotFound;
        WrongState for a config-declared schedule) or upsert (config reconciliation)."""
        k = self.keys
        call = secrets.token_urlsafe(9)
        args: list[Any] = [mode, schedule_id, next_ms, call, k.channel]
        for name, value in fields.items():
            args += [name, value]
        script = self._scripts.get("schedule_put")
        reply = await _retrying(
            lambda: script(keys=[k.schedule(schedule_id), k.due, k.ids], args=args)
        )
        return _fields(_refusal(reply, schedule_id, PUT_REFUSALS))

    async def delete(self, schedule_id: str, api_only: bool = True) -> Fields:
        """Remove a schedule; returns what it was. A retry whose first try deleted it (reply
        lost) counts as done, not as NotFound."""
        k = self.keys
        tries = 0
        script = self._scripts.get("schedule_delete")

        async def call() -> Any:
            nonlocal tries
            tries += 1
            return await script(
                keys=[k.schedule(schedule_id), k.due, k.ids],
                args=[schedule_id, "api" if api_only else ""],
            )

        reply = await _retrying(call)
        if reply == -1 and tries > 1:
            return {}
        return _fields(_refusal(reply, schedule_id, EDIT_REFUSALS))

    async def pause(self, schedule_id: str) -> Fields:
        k = self.keys
        script = self._scripts.get("schedule_pause")
        reply = await _retrying(
            lambda: script(keys=[k.schedule(schedule_id), k.due], args=[schedule_id])
        )
        return _fields(_refusal(reply, schedule_id, EDIT_REFUSALS))

    async def resume(self, schedule_id: str, next_ms: int) -> Fields:
        k = self.keys
        script = self._scripts.get("schedule_resume")
        reply = await _retrying(
            lambda: script(
                keys=[k.schedule(schedule_id), k.due], args=[schedule_id, next_ms, k.channel]
            )
        )
        return _fields(_refusal(reply, schedule_id, EDIT_REFUSALS))

    async def get(self, schedule_id: str) -> Fields:
        raw = await _retrying(lambda: self.redis.hgetall(self.keys.schedule(schedule_id)))
        if not raw:
            raise NotFound(f"no schedule with id {schedule_id!r}")
        return _hash(raw)

    async def list_all(self) -> list[Fields]:
        """Every schedule, by id."""
        members = await _retrying(lambda: self.redis.smembers(self.keys.ids))
        return await self._read(sorted(codec.text(m) for m in members))

    async def _read(self, ids: Sequence[str]) -> list[Fields]:
        if not ids:
            return []
        commands = [("hgetall", self.keys.schedule(i)) for i in ids]
        replies = await _retrying(lambda: _pipe(self.redis, *commands))
        return [_hash(r) for r in replies if r]

    # -- firing (the leader) ---------------------------------------------------------------

    async def due(self, until_ms: int, limit: int) -> list[Fields]:
        """Schedules whose next fire is at or before `until_ms`, earliest first."""
        ids = await _retrying(
            lambda: self.redis.zrange(
                self.keys.due, "-inf", until_ms, byscore=True, offset=0, num=limit
            )
        )
        return await self._read([codec.text(i) for i in ids])

    async def next_due_ms(self) -> int | None:
        """The earliest next fire of all running schedules (None: nothing scheduled)."""
        head = await _retrying(lambda: self.redis.zrange(self.keys.due, 0, 0, withscores=True))
        return int(head[0][1]) if head else None

    async def fire(
        self,
        token: int,
        schedule_id: str,
        expected: tuple[int, int],
        tick_ms: int,
        next_ms: int,
        task: tuple[str, str] | None,
    ) -> int:
        """schedule_fire.lua: `expected` is (rev, next fire) as planned; `task` is (task id,
        task JSON) for the fired tick. Returns 1, or the script's refusal code (-1..-4)."""
        k = self.keys
        task_id, body = task or ("", "")
        rev, planned = expected
        script = self._scripts.get("schedule_fire")
        return int(
            await _retrying(
                lambda: script(
                    keys=[k.lease, k.schedule(schedule_id), k.due, k.outbox, k.fired],
                    args=[token, schedule_id, rev, planned, tick_ms, next_ms, task_id, body],
                )
            )
        )

    async def outbox(self) -> dict[str, str]:
        """Ticks fired but not confirmed enqueued: task id -> task JSON."""
        return _hash(await _retrying(lambda: self.redis.hgetall(self.keys.outbox)))

    async def settle(self, task_ids: Sequence[str]) -> None:
        """The tasks are enqueued: drop them from the outbox (idempotent)."""
        if task_ids:
            await _retrying(lambda: self.redis.hdel(self.keys.outbox, *task_ids))


PUT_REFUSALS: dict[int, type[Exception]] = {-1: AlreadyExists, -2: NotFound, -3: WrongState}
EDIT_REFUSALS: dict[int, type[Exception]] = {-1: NotFound, -3: WrongState}


def _refusal(reply: Any, schedule_id: str, codes: Mapping[int, type[Exception]]) -> Any:
    """A script's negative code as its domain error; any other reply passes through."""
    if not isinstance(reply, int):
        return reply
    cls = codes[reply]
    if cls is AlreadyExists:
        raise AlreadyExists(f"a schedule with id {schedule_id!r} exists already")
    if cls is NotFound:
        raise NotFound(f"no schedule with id {schedule_id!r}")
    raise WrongState(f"schedule {schedule_id!r} is declared in the config file; change it there")
