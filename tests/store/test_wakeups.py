"""The wake-up subscription while Redis stays away: it backs off (0.25 s doubling to 30 s) and
logs the loss once, not every half second (issue 13 item 13)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from appliance.config import Settings
from appliance.store import connect
from appliance.store.wakeups import Wakeups
from tests.redis_server import free_port


async def test_a_lost_subscription_backs_off_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nobody = connect(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    wakeups = Wakeups(nobody, "atp:wake")
    tries = 0
    real = wakeups._listen

    async def counted() -> None:
        nonlocal tries
        tries += 1
        await real()

    wakeups._listen = counted  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="appliance.store.wakeups"):
        runner = asyncio.create_task(wakeups.run())
        await asyncio.sleep(2.5)
        wakeups.stop()
        await asyncio.wait_for(runner, 5)
    await nobody.aclose()
    assert 2 <= tries <= 5  # 0.25 + 0.5 + 1 s of pauses, not 5 tries at 0.5 s
    lost = [r for r in caplog.records if "subscription" in r.getMessage()]
    assert len(lost) == 1, [r.getMessage() for r in lost]
