"""The SDK against a server that requires tokens, TLS or mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from appliance import AsyncClient, Worker
from appliance.auth import hash_token
from appliance.client import Tls, status_name
from appliance.config import Settings
from appliance.errors import ConfigError, PermissionDenied, Unauthenticated, Unavailable
from appliance.model import Task, TaskState
from tests.security.test_bootstrap_tls import pki  # noqa: F401 - the CA/server/client PEM files

ENTRIES = [
    {"name": "prod", "hash": hash_token("p-secret"), "role": "producer"},
    {"name": "work", "hash": hash_token("w-secret"), "role": "worker"},
]
NAME_OVERRIDE = (("grpc.ssl_target_name_override", "localhost"),)


async def start(settings: Settings) -> Any:
    from appliance.api.server import QueueServer
    from appliance.store import Store, connect

    store = Store(connect(settings), settings)
    server = QueueServer(settings, store)
    await server.start()
    return server, store


@pytest.fixture
async def secured(settings: Settings) -> AsyncIterator[str]:
    server, store = await start(settings.replace(tokens=ENTRIES))
    yield server.address
    await server.stop(0.5)
    await store.close()


async def test_bearer_tokens(secured: str) -> None:
    async with AsyncClient(secured) as anonymous:
        with pytest.raises(Unauthenticated, match="Bearer") as refused:
            await anonymous.enqueue("t", "p")
    assert status_name(refused.value) == "UNAUTHENTICATED"
    async with AsyncClient(secured, token="p-secret") as producer:
        task_id = await producer.enqueue("t", "p")
        with pytest.raises(PermissionDenied):
            await producer.retrieve("t")
        worker = Worker(secured, token="w-secret", drain_timeout=1)
        done: list[str] = []

        @worker.task("t")
        def handle(task: Task) -> None:
            done.append(task.id)
            worker.stop()

        await worker.run_async()
        assert done == [task_id]
        assert (await producer.get_task(task_id)).state == TaskState.SUCCEEDED


async def test_tls_and_mutual_tls(settings: Settings, pki: dict[str, Path]) -> None:  # noqa: F811
    tls = settings.replace(
        tls_cert_file=str(pki["server.crt"]), tls_key_file=str(pki["server.key"])
    )
    mtls = tls.replace(tls_client_ca_file=str(pki["ca"]))
    trust = Tls(ca_file=str(pki["ca"]))
    mine = Tls(str(pki["ca"]), str(pki["client.crt"]), str(pki["client.key"]))
    for server_settings, good, bad in ((tls, trust, None), (mtls, mine, trust)):
        server, store = await start(server_settings)
        try:
            async with AsyncClient(server.address, tls=good, options=NAME_OVERRIDE) as client:
                assert (await client.stats()).now_ms > 0
            async with AsyncClient(server.address, tls=bad, options=NAME_OVERRIDE) as client:
                with pytest.raises(Unavailable):
                    await client.stats()
        finally:
            await server.stop(0.5)
            await store.close()


def test_tls_settings_and_missing_files(settings: Settings, tmp_path: Path) -> None:
    assert Tls.from_settings(settings) is None
    client_side = settings.replace(
        tls_ca_file="ca.pem", tls_client_cert_file="c.pem", tls_client_key_file="k.pem"
    )
    assert Tls.from_settings(client_side) == Tls("ca.pem", "c.pem", "k.pem")
    with pytest.raises(ConfigError, match=r"missing\.pem"):
        Tls(ca_file=str(tmp_path / "missing.pem")).credentials()
