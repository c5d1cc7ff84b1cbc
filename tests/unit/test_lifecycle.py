"""The lifecycle table and the Lua scripts agree, and every script has its own test module.

The agreement is read from each script's text (its lib includes put in place): the states it
writes (`'state', '<STATE>'` in an HSET, the state handed to `write_new_record`, a packed
record made by `pack_new_record` is PENDING, the task key deleted is "gone") and the state sets
it takes tasks out of (`ZREM pending | running | dlq`). A script that drifts from
appliance/model.py TRANSITIONS fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.model import LIVE_STATES, TERMINAL_STATES, TRANSITIONS, TaskState, allowed
from appliance.store.scripts import SCRIPT_NAMES, available_scripts, script_source

TESTS = Path(__file__).resolve().parents[1] / "store"
SCRIPT_TESTS = {"requeue_dead": "test_dead_letters", "purge_dead": "test_dead_letters"}

STATE = "|".join(s.value for s in TaskState)
# The ZSET a task in a state is indexed by, by the local name every task script binds it to.
STATE_SET = {TaskState.PENDING: "pending", TaskState.RUNNING: "running", TaskState.DEAD: "dlq"}


def _code(source: str) -> str:
    """The script without its comment lines (the contract header names states too)."""
    return "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("--"))


def _calls(code: str, function: str) -> list[str]:
    """The text from each call of a Lua function (not its definition) to the end of the file."""
    return [code[m.end() :] for m in re.finditer(rf"(?<!function )\b{function}\(", code)]


def state_writes(source: str) -> set[TaskState | None]:
    """The states a script moves tasks into; None: it deletes the task record."""
    code = _code(source)
    found: set[TaskState | None] = {
        TaskState(s) for s in re.findall(rf"'state',\s*'({STATE})'", code)
    }
    for rest in _calls(code, "write_new_record"):
        first = re.search(rf"'({STATE})'", rest)
        assert first, "write_new_record called without a literal state"
        found.add(TaskState(first.group(1)))
    if _calls(code, "pack_new_record"):
        found.add(TaskState.PENDING)  # a packed record in `new` is a task PENDING
    if re.search(r"redis\.call\('DEL', prefix \.\.", code):
        found.add(None)
    return found


def state_exits(source: str) -> set[TaskState]:
    """The states a script takes tasks out of (the state sets it removes ids from)."""
    by_set = {name: state for state, name in STATE_SET.items()}
    found = re.findall(rf"redis\.call\('ZREM', ({'|'.join(by_set)})\b", _code(source))
    return {by_set[name] for name in found}


def _moves(script: str) -> list[tuple[TaskState | None, TaskState | None]]:
    """The edges of TRANSITIONS a script makes that change the state (extend's does not)."""
    edges = [t for t in TRANSITIONS if t.script == script and t.source != t.target]
    return [(t.source, t.target) for t in edges]


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_each_script_writes_the_states_of_its_edges(script: str) -> None:
    assert state_writes(script_source(script)) == {target for _, target in _moves(script)}


@pytest.mark.parametrize("script", SCRIPT_NAMES)
def test_each_script_takes_tasks_out_of_the_states_of_its_edges(script: str) -> None:
    sources = {source for source, _ in _moves(script) if source in STATE_SET}
    assert state_exits(script_source(script)) == sources


def test_a_drifted_script_is_caught() -> None:
    """The reading is strict enough: a nack that parked tasks as CANCELED, a claim that leased
    into PENDING or a cancel that took tasks out of the running set would each fail above."""
    nack = script_source("nack")
    assert state_writes(nack.replace("'DEAD'", "'CANCELED'")) != state_writes(nack)
    claim = script_source("claim")
    assert TaskState.PENDING in state_writes(claim.replace("1,\n      'RUNNING'", "1, 'PENDING'"))
    cancel = script_source("cancel")
    assert TaskState.RUNNING in state_exits(cancel.replace("'ZREM', pending", "'ZREM', running"))


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


def test_the_clock_and_wake_snippets_come_from_lua_lib() -> None:
    """Every script reads the Redis clock through lib/clock.lua and publishes through
    lib/wake.lua, so neither snippet is copied again."""
    lua = Path(__file__).resolve().parents[2] / "appliance" / "store" / "lua"
    for name in available_scripts():
        own = (lua / f"{name}.lua").read_text()
        assert "'TIME'" not in own and "'PUBLISH'" not in own, name


def test_architecture_names_each_move_with_its_script_and_test() -> None:
    """docs/ARCHITECTURE.md's lifecycle table has one row per edge of TRANSITIONS, each naming
    its script and an existing test module."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md").read_text()
    rows = [r for r in doc.splitlines() if re.match(r"\| .* \| `\w+\.lua` \| `test_\w+\.py` \|", r)]
    assert len(rows) == len(TRANSITIONS)
    for t in TRANSITIONS:
        module = SCRIPT_TESTS.get(t.script, f"test_{t.script}")
        assert any(f"`{t.script}.lua` | `{module}.py`" in r for r in rows), t
        assert (TESTS / f"{module}.py").exists()
