"""One real `atp --role=all` per test module, seeded with tests/console/appliance.py's workload."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.auth import hash_token
from tests.console.appliance import Appliance, seed

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
# Flags that work on these machines (headless as root; no background connections, which the
# closed network refuses).
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1200,800",
)
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


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Selenium over Debian's chromium-driver)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is missing")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(
            "chromium and chromium-driver are missing (apt-get install chromium chromium-driver)"
        )
    profile = tempfile.mkdtemp(prefix="atp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
