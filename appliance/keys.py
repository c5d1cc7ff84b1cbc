"""Every Redis key and channel name atp uses, built in one place.

All keys of one topic share the hash tag `{<topic>}`, so a topic's keys live in one
Redis Cluster slot and every script touches one slot only. Stdlib only.
"""

from __future__ import annotations

import dataclasses


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


@dataclasses.dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "atp"

    def topic(self, topic: str) -> TopicKeys:
        return TopicKeys(self.prefix, topic)

    @property
    def topics(self) -> str:
        """SET of every topic ever enqueued to (for stats and the watchdog)."""
        return f"{self.prefix}:topics"

    def id_index(self, task_id: str) -> str:
        """STRING task id -> topic, so Delete and GetTask work with the id alone."""
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
