"""The recording worker's start rule is the SDK Worker's: a delivery starts only while its
lease deadline is DEADLINE_MARGIN_MS ahead and (on a stream) the server was heard from within
FRESH_MS."""

from __future__ import annotations

from appliance.worker.runtime import DEADLINE_MARGIN_MS, FRESH_MS
from chaos.worker import parse, start_refusal


def test_a_delivery_starts_only_inside_its_lease_and_while_the_stream_is_fresh() -> None:
    now = 1_000_000
    assert start_refusal(now + DEADLINE_MARGIN_MS + 1, now) is None
    assert start_refusal(now + DEADLINE_MARGIN_MS, now) == "lease deadline"
    assert start_refusal(now - 1, now) == "lease deadline"
    fresh, stale = now - FRESH_MS, now - FRESH_MS - 1
    assert start_refusal(now + 10_000, now, heard_ms=fresh) is None
    assert start_refusal(now + 10_000, now, heard_ms=stale) == "stale stream"


def test_the_transport_is_chosen_on_the_command_line() -> None:
    base = ["--addr", "a:1", "--topics", "t", "--log", "l", "--name", "w"]
    assert parse(base).transport == "unary"
    ns = parse([*base, "--transport", "stream", "--prefetch", "5"])
    assert (ns.transport, ns.prefetch) == ("stream", 5)
