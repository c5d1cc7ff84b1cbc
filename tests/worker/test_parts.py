"""The runtime's small parts on their own: outcomes, error text, the server clock."""

from __future__ import annotations

import time

from appliance.client.work import ServerClock
from appliance.errors import DeadLetterTask, RetryTask
from appliance.worker.execution import ERROR_TEXT_MAX, describe, outcome_of


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


def test_server_clock_estimates_from_the_best_sample_and_keeps_time_while_stopped() -> None:
    clock = ServerClock()
    base = time.monotonic() * 1000
    clock.saw(1_000_000)
    first = clock.offset_ms
    clock.saw(999_000)  # an older (buffered) message: the bound does not go down
    assert clock.offset_ms == first
    assert clock.now_ms() >= 1_000_000 + (time.monotonic() * 1000 - base) - 5
