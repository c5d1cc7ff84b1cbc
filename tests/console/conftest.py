"""One real `atp --role=all` per test module, seeded with tests/console/appliance.py's workload."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from appliance.auth import hash_token
from tests.console.appliance import Appliance, seed

ADMIN, VIEWER, PRODUCER = "console-admin-secret", "console-viewer-secret", "console-prod-secret"
TOKENS = [
    {"name": "ops", "hash": hash_token(ADMIN), "role": "admin"},
    {"name": "looker", "hash": hash_token(VIEWER), "role": "viewer"},
    {"name": "app", "hash": hash_token(PRODUCER), "role": "producer"},
]


@pytest.fixture(scope="module")
def open_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """No tokens, loopback: the console is open as the API is."""
    appliance = Appliance(tmp_path_factory.mktemp("console") / "data")
    try:
        with appliance.client() as client:
            seed(client)
        yield appliance
    finally:
        assert appliance.stop() == 0, appliance.log()[-3000:]


@pytest.fixture(scope="module")
def token_appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """Tokens configured (admin, viewer, producer): the console asks for one."""
    appliance = Appliance(tmp_path_factory.mktemp("console") / "data", TOKENS)
    try:
        with appliance.client(ADMIN) as client:
            seed(client)
        yield appliance
    finally:
        assert appliance.stop() == 0, appliance.log()[-3000:]
