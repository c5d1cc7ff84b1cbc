"""The lifecycle table and the Lua scripts agree, and every script has its own test module."""

from __future__ import annotations

from pathlib import Path

from appliance.model import LIVE_STATES, TERMINAL_STATES, TRANSITIONS, TaskState, allowed
from appliance.store.scripts import SCRIPT_NAMES, available_scripts, script_source

TESTS = Path(__file__).resolve().parents[1] / "store"
SCRIPT_TESTS = {"requeue_dead": "test_dead_letters", "purge_dead": "test_dead_letters"}


def test_every_edge_has_a_script_and_every_task_script_is_an_edge() -> None:
    assert {t.script for t in TRANSITIONS} == set(SCRIPT_NAMES)
    assert set(SCRIPT_NAMES) <= set(available_scripts())


def test_every_script_has_a_test_module() -> None:
    for name in available_scripts():
        module = SCRIPT_TESTS.get(name, f"test_{name}")
        assert (TESTS / f"{module}.py").exists(), f"lua/{name}.lua has no tests/store/{module}.py"


def test_every_script_opens_with_its_contract() -> None:
    for name in available_scripts():
        text = script_source(name)
        assert text.startswith(f"-- {name}:"), name
        assert "KEYS[1]" in text and "Returns:" in text, name


def test_terminal_states_have_no_way_out() -> None:
    for state in TERMINAL_STATES:
        assert not any(t.source == state for t in TRANSITIONS)
    for state in LIVE_STATES:
        assert any(t.source == state for t in TRANSITIONS)


def test_running_moves() -> None:
    assert allowed(TaskState.RUNNING, TaskState.PENDING)
    assert allowed(TaskState.RUNNING, TaskState.DEAD)
    assert not allowed(TaskState.RUNNING, TaskState.CANCELED)
    assert not allowed(TaskState.SUCCEEDED, TaskState.PENDING)
