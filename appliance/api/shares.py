"""Fair shares of a server's waiting slots between tokens: long-polling Retrieves (and the
worker streams) hold a slot each, at most `total` at once. When every slot is taken, a newcomer
gets one back from the token holding the most, as long as that token holds more than the
newcomer plus one: every token keeps at least its fair share (total / tokens waiting), and one
token holding every slot cannot starve another. The slot given back is told to end early
(`Slot.evicted`, `Slot.on_evict`): a long-poll answers at once, with what it has.

Stdlib only; knows nothing of gRPC (the caller keys slots by its principal's name).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator

from appliance.errors import RateLimited


@dataclasses.dataclass(eq=False)
class Slot:
    key: str
    evicted: bool = False
    on_evict: Callable[[], None] | None = None  # e.g. set the waiter's wake-up event

    def evict(self) -> None:
        self.evicted = True
        if self.on_evict is not None:
            self.on_evict()


class Shares:
    def __init__(self, total: int, what: str = "long-polls", setting: str = "max_long_polls"):
        self.total = total
        self.what = what
        self.setting = setting
        self.used = 0
        self._held: dict[str, list[Slot]] = {}  # oldest first

    def held_by(self, key: str) -> int:
        return len(self._held.get(key, ()))

    def acquire(self, key: str) -> Slot:
        """A slot for `key`, taken back from the richest key when all are in use; else
        RateLimited (the caller's share is already fair)."""
        if self.used >= self.total:
            self._make_room(key)
        slot = Slot(key)
        self._held.setdefault(key, []).append(slot)
        self.used += 1
        return slot

    def release(self, slot: Slot) -> None:
        held = self._held.get(slot.key)
        if held is None or slot not in held:
            return  # given back already (evicted)
        held.remove(slot)
        self.used -= 1
        if not held:
            del self._held[slot.key]

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[Slot]:
        slot = self.acquire(key)
        try:
            yield slot
        finally:
            self.release(slot)

    def _make_room(self, key: str) -> None:
        mine = self.held_by(key)
        richest = max(self._held, key=self.held_by, default=None)
        if richest is None or self.held_by(richest) <= mine + 1:
            raise RateLimited(
                f"all {self.total} {self.what} of this server are taken and {key!r} holds its "
                f"fair share ({mine}; {self.setting}); retry later"
            )
        victim = self._held[richest][0]
        self.release(victim)
        victim.evict()
