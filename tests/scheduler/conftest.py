"""Scheduler fixtures: a ScheduleService stub over the in-process server's channel, and an
in-process leader + scheduler pair against the test Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from appliance.config import Settings
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.scheduler.registry import Registry
from appliance.store import Store


@pytest_asyncio.fixture
async def schedule_stub(server: object) -> AsyncIterator[pb_grpc.ScheduleServiceStub]:
    async with grpc.aio.insecure_channel(server.address) as channel:  # type: ignore[attr-defined]
        yield pb_grpc.ScheduleServiceStub(channel)


@pytest_asyncio.fixture
async def registry(store: Store, settings: Settings) -> Registry:
    return Registry(store, settings)
