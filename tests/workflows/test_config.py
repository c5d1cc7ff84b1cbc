"""Workflows declared in the config file: checked at start (a bad one is a ConfigError naming
the key), put by the server's advancer, a new version only when the definition changed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from appliance import config
from appliance.config import Settings
from appliance.errors import ConfigError
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import Advancer
from appliance.workflows.definitions import from_config

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "atp.example.yaml"
DEMO = EXAMPLE.with_name("demo.yaml")
CHAIN: list[Any] = [
    {
        "name": "w",
        "steps": [
            {"name": "a", "topic": "t"},
            {"name": "b", "topic": "t", "after": "a", "delay_ms": "3d"},
        ],
    }
]


def test_the_example_config_declares_the_user_lifecycle() -> None:
    (wf,) = from_config(config.load(str(EXAMPLE)).workflows, 1 << 20)
    assert wf.name == "user-lifecycle" and wf.step("coupon").delay_ms == 3 * 86_400_000


def test_the_demo_declares_the_user_lifecycle_and_the_order_timeout() -> None:
    lifecycle, order = from_config(config.load(str(DEMO)).workflows, 1 << 20)
    assert lifecycle.step("coupon").delay_ms == 10_000 and order.on_failure == "cancel-order"
    assert order.step("paid").timeout_ms == 30_000


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ([{"name": "w", "steps": [{"name": "a", "topic": "t", "after": ["x"]}]}], "unknown parent"),
        ([{"name": "w", "steps": [{"name": "a", "topik": "t"}]}], "steps[0].topik: unknown key"),
        ([{"name": "w", "steps": [{"name": "a", "topic": "t", "delay_ms": "soon"}]}], "duration"),
        ([{"name": "w"}], "steps: expected a list"),
        (CHAIN + CHAIN, "workflows[1].name: 'w' is declared twice"),
    ],
)
def test_a_bad_declaration_stops_the_start_naming_its_key(raw: list[Any], words: str) -> None:
    with pytest.raises(ConfigError, match="workflows\\[") as bad:
        from_config(raw, 1 << 20)
    assert words in str(bad.value)


async def test_the_server_puts_declared_workflows_once_per_change(
    store: Store, settings: Settings
) -> None:
    wf = WorkflowStore(store)
    declared = dataclasses.replace(settings, workflows=CHAIN)
    await Advancer(store, declared).declare()
    await Advancer(store, declared).declare()  # a restart: nothing changed, no new version
    assert await wf.workflow_names() == {"w": 1}
    changed = [{**CHAIN[0], "steps": [{"name": "a", "topic": "u"}]}]
    await Advancer(store, dataclasses.replace(settings, workflows=changed)).declare()
    assert (await wf.workflow("w"))[0] == 2
