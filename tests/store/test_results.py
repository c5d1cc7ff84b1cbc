"""The script result table (appliance/store/results.py): every script has its row, every code
of a row is in its script's contract header, the loader refuses a table that differs from lua/
at start, and a store error names its operation."""

from __future__ import annotations

import re
import socket

import pytest

from appliance.config import Settings
from appliance.errors import NotFound, StaleLease, Unavailable
from appliance.store import Store, connect
from appliance.store.results import CODES, ERRORS, Refusal, error, refusal
from appliance.store.scripts import Scripts, available_scripts, script_source


def test_every_script_has_a_row_and_every_code_is_in_its_header() -> None:
    assert set(CODES) == set(available_scripts())
    for name, codes in CODES.items():
        header = "\n".join(x for x in script_source(name).splitlines() if x.startswith("--"))
        returns = header[header.index("Returns:") :]
        for code in codes:
            assert re.search(rf"(?<![\d-]){code}\b", returns), f"{name}.lua does not list {code}"


def test_the_same_number_means_what_its_script_says() -> None:
    assert refusal("ack", -2) is Refusal.STALE_LEASE
    assert refusal("schedule_fire", -2) is Refusal.NOT_LEADER
    assert refusal("schedule_put", -2) is Refusal.NOT_FOUND
    assert refusal("nack", [-1]) is Refusal.NOT_FOUND
    assert refusal("nack", [1, 0, 5000]) is None and refusal("extend", 1234) is None
    assert refusal("schedule_put", [b"id", b"s1"]) is None
    with pytest.raises(AssertionError, match="does not list"):
        refusal("ack", -7)


def test_refusals_map_to_domain_errors() -> None:
    assert isinstance(error(Refusal.STALE_LEASE, "x"), StaleLease)
    assert isinstance(error(Refusal.NOT_FOUND, "x"), NotFound)
    assert Refusal.NOT_LEADER not in ERRORS  # the scheduler's news, never a caller's error


async def test_the_loader_refuses_a_table_that_differs_from_lua(store: Store) -> None:
    with pytest.raises(ValueError, match=r"no file for \['nope'\]"):
        Scripts(store.redis, [*CODES, "nope"])
    with pytest.raises(ValueError, match=r"no results\.CODES row for \['ack'\]"):
        Scripts(store.redis, [n for n in CODES if n != "ack"])
    with pytest.raises(ValueError, match="no script 'nope'"):
        await store.run("nope", [], [])


async def test_unavailable_names_the_operation() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(redis_url=f"redis://127.0.0.1:{port}/0")
    store = Store(connect(settings), settings)
    try:
        with pytest.raises(Unavailable, match=r"^claim: redis unavailable"):
            await store.claim("t", 1, 1000)
        with pytest.raises(Unavailable, match=r"^get: redis unavailable"):
            await store.get("x", "t")
    finally:
        await store.close()
