"""The runtime's small parts on their own: slots, outcomes, error text."""

from __future__ import annotations

import asyncio

from appliance.errors import DeadLetterTask, RetryTask
from appliance.worker.runtime import ERROR_TEXT_MAX, Slots, describe, outcome_of


async def test_slots_hand_out_what_is_free_first_come_first_served() -> None:
    slots = Slots(3)
    assert await slots.take(5) == 3
    first = asyncio.create_task(slots.take(2))
    await asyncio.sleep(0)
    second = asyncio.create_task(slots.take(2))
    await asyncio.sleep(0)
    slots.give(1)
    assert await first == 1
    assert not second.done()
    slots.give(2)
    assert await second == 2


def test_outcomes_of_handler_exceptions() -> None:
    retry = outcome_of(RetryTask("later", after_ms=1500))
    assert (retry.ack, retry.retry_after_ms, retry.dead_letter) == (False, 1500, False)
    assert retry.error == "RetryTask: later"
    dead = outcome_of(DeadLetterTask("never"))
    assert dead.dead_letter and dead.error == "DeadLetterTask: never"
    plain = outcome_of(KeyError("k"))
    assert (plain.retry_after_ms, plain.dead_letter, plain.error) == (0, False, "KeyError: 'k'")


def test_error_text_is_cut() -> None:
    assert describe(ValueError()) == "ValueError"
    assert len(describe(ValueError("x" * 10_000))) == ERROR_TEXT_MAX
