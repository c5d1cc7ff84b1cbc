"""`atp workflow put|get|list|delete` and `atp run start|get|list|cancel|signal` as real
subprocesses against a real `atp --role=server` process (which advances the runs)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_commands import atp, ok, ok_json
from tests.conftest import ServerProcess, on_both

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)

DEFINITION = """
name: {name}
steps:
  - name: paid
    signal: paid
    timeout_ms: 3600000
  - name: ship
    topic: {name}-ship
    payload: '{{{{ steps.paid.output }}}}'
    after: [paid]
"""


@pytest.fixture(scope="module")
def address(redis_url: str) -> Iterator[str]:
    proc = ServerProcess(redis_url)
    yield proc.address
    proc.stop()


def test_workflow_and_run_verbs(address: str, tmp_path: Path) -> None:
    name = f"order-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "order.yaml"
    spec.write_text(DEFINITION.format(name=name))
    assert ok_json("workflow", "put", str(spec), "--json", addr=address) == {
        "name": name,
        "version": 1,
    }
    assert f"{name} v1" in ok("workflow", "list", addr=address)
    got = ok_json("workflow", "get", name, "--json", addr=address)
    assert [s["name"] for s in got["steps"]] == ["paid", "ship"]
    run_id = ok("run", "start", name, "--input", '{"order": 1}', "--id", f"{name}-r1", addr=address)
    assert run_id == f"{name}-r1"
    assert (
        ok_json("run", "signal", run_id, "paid", "--payload", "3", "--json", addr=address)[
            "duplicate"
        ]
        is False
    )
    deadline = time.monotonic() + 10
    while "SCHEDULED" not in (shown := ok("run", "get", run_id, addr=address)):
        assert time.monotonic() < deadline, shown
        time.sleep(0.05)
    assert ok_json("run", "cancel", run_id, "--json", addr=address)["canceled"] is True
    run = ok_json("run", "get", run_id, "--json", addr=address)
    assert run["state"] == "RUN_CANCELED" and run["steps"][0]["output"] == "3"
    listed = ok_json("run", "list", "--workflow", name, "--json", addr=address)
    assert [r["id"] for r in listed["runs"]] == [run_id]
    assert ok("workflow", "delete", name, addr=address) == f"deleted {name}"
    refused = atp("run", "start", name, addr=address)
    assert refused.returncode == 1 and "NOT_FOUND" in refused.stderr


def test_a_bad_definition_file_is_a_usage_error(address: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: w\nsteps: [{name: a, topik: t}]\n")
    done = atp("workflow", "put", str(bad), addr=address)
    assert done.returncode == 2 and "not a workflow definition" in done.stderr
    cycle = tmp_path / "cycle.yaml"
    cycle.write_text(
        json.dumps({"name": "w", "steps": [{"name": "a", "topic": "t", "after": ["a"]}]})
    )
    done = atp("workflow", "put", str(cycle), addr=address)
    assert done.returncode == 1 and "INVALID_ARGUMENT" in done.stderr and "cycle" in done.stderr
