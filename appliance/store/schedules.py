"""The store side of schedules and scheduler leadership: one method per Lua script
(lua/leader_*.lua, lua/schedule_*.lua) plus plain reads; their keys are
appliance/keys.py's SchedulerKeys. A schedule travels as
its HASH fields (text -> text); appliance/scheduler/definitions.py owns their meaning. Only this
package imports redis; this module must not import the scheduler or grpc.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from appliance.errors import NotFound
from appliance.store import codec
from appliance.store.results import Refusal, error, refusal
from appliance.store.store import Store

Fields = dict[str, str]


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


class ScheduleStore:
    """Schedules and leadership on the same Redis client (and script registry) as `store`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.redis = store.redis
        self.keys = store.keys.scheduler

    async def now_ms(self) -> int:
        return await self.store.now_ms()

    # -- leadership ------------------------------------------------------------------------

    async def acquire(self, holder: str, ttl_ms: int) -> LeaseReply:
        """Take the lease if free (safe to retry: a holder gets its own lease back)."""
        k = self.keys
        reply = await self.store.run("leader_acquire", [k.lease, k.fence], [holder, ttl_ms])
        granted, who, token, expires, left = reply
        return LeaseReply(
            bool(granted), codec.text(who), int(token), codec.number(expires), int(left)
        )

    async def renew(self, token: int, ttl_ms: int) -> int | Refusal:
        """The new expiry (ms), or LEASE_GONE (it expired) / NOT_LEADER (another token holds
        it)."""
        reply = await self.store.run("leader_renew", [self.keys.lease], [token, ttl_ms])
        return refusal("leader_renew", reply) or int(reply)

    async def release(self, token: int) -> bool:
        return bool(await self.store.run("leader_release", [self.keys.lease], [token]))

    async def leader(self) -> LeaderInfo:
        k = self.keys
        lease, fired = await self.store.read("leader", ("hgetall", k.lease), ("get", k.fired))
        f = codec.text_hash(lease)
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
        reply = await self.store.run("schedule_put", [k.schedule(schedule_id), k.due, k.ids], args)
        return codec.text_pairs(_refused("schedule_put", reply, schedule_id))

    async def delete(self, schedule_id: str, api_only: bool = True) -> Fields:
        """Remove a schedule; returns what it was. A retry whose first try deleted it (reply
        lost) counts as done, not as NotFound."""
        k = self.keys
        tries = 0

        async def call() -> Any:
            nonlocal tries
            tries += 1
            return await self.store.scripts.call(
                "schedule_delete",
                [k.schedule(schedule_id), k.due, k.ids],
                [schedule_id, "api" if api_only else ""],
            )

        reply = await self.store.call("schedule_delete", call)
        if refusal("schedule_delete", reply) is Refusal.NOT_FOUND and tries > 1:
            return {}
        return codec.text_pairs(_refused("schedule_delete", reply, schedule_id))

    async def pause(self, schedule_id: str) -> Fields:
        k = self.keys
        keys = [k.schedule(schedule_id), k.due]
        reply = await self.store.run("schedule_pause", keys, [schedule_id])
        return codec.text_pairs(_refused("schedule_pause", reply, schedule_id))

    async def resume(self, schedule_id: str, next_ms: int) -> Fields:
        k = self.keys
        reply = await self.store.run(
            "schedule_resume", [k.schedule(schedule_id), k.due], [schedule_id, next_ms, k.channel]
        )
        return codec.text_pairs(_refused("schedule_resume", reply, schedule_id))

    async def get(self, schedule_id: str) -> Fields:
        (raw,) = await self.store.read("schedule_get", ("hgetall", self.keys.schedule(schedule_id)))
        if not raw:
            raise NotFound(f"no schedule with id {schedule_id!r}")
        return codec.text_hash(raw)

    async def list_all(self) -> list[Fields]:
        """Every schedule, by id."""
        (members,) = await self.store.read("schedule_list", ("smembers", self.keys.ids))
        return await self._read(sorted(codec.text(m) for m in members))

    async def _read(self, ids: Sequence[str]) -> list[Fields]:
        if not ids:
            return []
        commands = [("hgetall", self.keys.schedule(i)) for i in ids]
        replies = await self.store.read("schedule_read", *commands)
        return [codec.text_hash(r) for r in replies if r]

    # -- firing (the leader) ---------------------------------------------------------------

    async def due(self, until_ms: int, limit: int) -> list[Fields]:
        """Schedules whose next fire is at or before `until_ms`, earliest first."""
        ids = await self.store.call(
            "schedule_due",
            lambda: self.redis.zrange(
                self.keys.due, "-inf", until_ms, byscore=True, offset=0, num=limit
            ),
        )
        return await self._read([codec.text(i) for i in ids])

    async def next_due_ms(self) -> int | None:
        """The earliest next fire of all running schedules (None: nothing scheduled)."""
        head = await self.store.call(
            "schedule_due", lambda: self.redis.zrange(self.keys.due, 0, 0, withscores=True)
        )
        return int(head[0][1]) if head else None

    async def fire(
        self,
        token: int,
        schedule_id: str,
        expected: tuple[int, int],
        tick_ms: int,
        next_ms: int,
        task: tuple[str, str] | None,
    ) -> Refusal | None:
        """schedule_fire.lua: `expected` is (rev, next fire) as planned; `task` is (task id,
        task JSON) for the fired tick. Returns None (advanced) or the script's refusal."""
        k = self.keys
        task_id, body = task or ("", "")
        rev, planned = expected
        reply = await self.store.run(
            "schedule_fire",
            [k.lease, k.schedule(schedule_id), k.due, k.outbox, k.fired],
            [token, schedule_id, rev, planned, tick_ms, next_ms, task_id, body],
        )
        return refusal("schedule_fire", reply)

    async def fire_now(self, schedule_id: str, tick_ms: int, task: tuple[str, str]) -> None:
        """schedule_fire_now.lua: park one tick's (task id, task JSON) in the outbox for the
        leader to enqueue; NotFound for a schedule that does not exist."""
        k = self.keys
        reply = await self.store.run(
            "schedule_fire_now",
            [k.schedule(schedule_id), k.outbox, k.fired],
            [schedule_id, tick_ms, *task, k.channel],
        )
        _refused("schedule_fire_now", reply, schedule_id)

    async def outbox(self) -> dict[str, str]:
        """Ticks fired but not confirmed enqueued: task id -> task JSON."""
        (raw,) = await self.store.read("schedule_outbox", ("hgetall", self.keys.outbox))
        return codec.text_hash(raw)

    async def settle(self, task_ids: Sequence[str]) -> None:
        """The tasks are enqueued: drop them from the outbox (idempotent)."""
        if task_ids:
            await self.store.read("schedule_settle", ("hdel", self.keys.outbox, *task_ids))


REFUSED = {
    Refusal.EXISTS: "a schedule with id {!r} exists already",
    Refusal.NOT_FOUND: "no schedule with id {!r}",
    Refusal.CONFIG_DECLARED: "schedule {!r} is declared in the config file; change it there",
}


def _refused(script: str, reply: Any, schedule_id: str) -> Any:
    """A schedule script's refusal as its domain error; any other reply passes through."""
    why = refusal(script, reply)
    if why is None:
        return reply
    raise error(why, REFUSED[why].format(schedule_id))
