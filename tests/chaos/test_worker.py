"""The recording worker's start rule is the SDK Worker's: a delivery starts only while its
lease deadline is DEADLINE_MARGIN_MS ahead (on a stream, WorkStream.start_refusal also asks
for a recently answered ping: tests/client/test_work_client.py)."""

from __future__ import annotations

from appliance.client.work import DEADLINE_MARGIN_MS
from chaos.worker import parse, start_refusal


def test_a_delivery_starts_only_inside_its_lease() -> None:
    now = 1_000_000
    assert start_refusal(now + DEADLINE_MARGIN_MS + 1, now) is None
    assert start_refusal(now + DEADLINE_MARGIN_MS, now) == "lease deadline"
    assert start_refusal(now - 1, now) == "lease deadline"


def test_the_transport_is_chosen_on_the_command_line() -> None:
    base = ["--addr", "a:1", "--topics", "t", "--log", "l", "--name", "w"]
    assert parse(base).transport == "unary"
    ns = parse([*base, "--transport", "stream", "--prefetch", "5"])
    assert (ns.transport, ns.prefetch) == ("stream", 5)
