"""The seed's own example client: grpcurl, with reflection, against `atp --role=server`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def grpcurl() -> str:
    for candidate in (ROOT / ".tools" / "grpcurl", Path.home() / "go" / "bin" / "grpcurl"):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("grpcurl")
    if found is None:
        pytest.skip("grpcurl is not installed (run `just tools`, which builds it with Go)")
    return found


def call(address: str, method: str, body: dict[str, object] | None = None) -> dict[str, object]:
    args = [grpcurl(), "-plaintext"]
    if body is not None:
        args += ["-d", json.dumps(body)]
    out = subprocess.run(
        [*args, address, method], capture_output=True, text=True, timeout=30, env=os.environ
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else {}


def test_seed_call_verbatim(server_process) -> None:
    """The seed's grpcurl call verbatim (docs/ARCHITECTURE.md, "Seed compatibility"), then the
    task is visible with its 10 s delay."""
    args = [
        grpcurl(),
        "-plaintext",
        "-d",
        '{"topic":"order-cancel","payload":"{\\"order_id\\":1024}","delay_seconds":10}',
        server_process.address,
        "api.queue.DelayQueueService/Enqueue",
    ]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    reply = json.loads(out.stdout)
    assert reply["success"] is True and reply["id"]
    task = call(server_process.address, "api.queue.DelayQueueService/GetTask", {"id": reply["id"]})
    assert task["state"] == "PENDING"
    assert task["task"]["payload"] == '{"order_id":1024}'  # type: ignore[index]
    due, created = int(task["task"]["execute_time_ms"]), int(task["task"]["created_at_ms"])  # type: ignore[index]
    assert due - created == 10_000


def test_reflection_lists_services_and_health_serves(server_process) -> None:
    out = subprocess.run(
        [grpcurl(), "-plaintext", server_process.address, "list"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    services = out.stdout.split()
    assert {"api.queue.DelayQueueService", "grpc.health.v1.Health"} <= set(services)
    assert call(server_process.address, "grpc.health.v1.Health/Check") == {"status": "SERVING"}


def test_retrieve_and_ack_with_grpcurl(server_process) -> None:
    call(
        server_process.address,
        "api.queue.DelayQueueService/Enqueue",
        {"topic": "g", "payload": "x", "id": "g1"},
    )
    got = call(
        server_process.address,
        "api.queue.DelayQueueService/Retrieve",
        {"topic": "g", "batch_size": 1},
    )
    (task,) = got["tasks"]  # type: ignore[misc]
    ack = call(
        server_process.address,
        "api.queue.DelayQueueService/Ack",
        {"id": "g1", "lease_token": task["lease_token"]},
    )
    assert ack == {"success": True}
