"""The role split behind nginx (tests/lb/topology.py), one per module: it takes a few seconds
to start. Skipped, naming the tool, where nginx is not installed."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lb.topology import RoleSplit


@pytest.fixture(scope="module")
def role_split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoleSplit]:
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    topology = RoleSplit(tmp_path_factory.mktemp("lb"))
    try:
        yield topology.start()
    finally:
        topology.stop()
