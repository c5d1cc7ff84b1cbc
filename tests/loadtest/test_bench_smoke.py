"""`just bench --short` for atp alone, end to end: the real drivers against a real
`atp --role=server` and redis-server (tiny W1, enqueue and W3), their JSON collected by
loadtest/bench.py and rendered into the doc. Proves the harness measures, parses and renders
its figures; no peers (they live in the bench venv, which the default test run does not build).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)  # about 30 s alone; the slack is for a busy machine
def test_short_bench_of_atp_measures_and_renders(tmp_path: Path) -> None:
    out, raw = tmp_path / "BENCHMARKS.md", tmp_path / "results.json"
    argv = [
        sys.executable,
        str(ROOT / "loadtest" / "bench.py"),
        "--short",
        "--systems=atp",
        "--only=w1,enqueue,w3",
        f"--bench-python={sys.executable}",
        f"--node-dir={tmp_path}",
        f"--out={out}",
        f"--json={raw}",
        "--baseline=",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stderr[-3000:]  # the bench's progress lines: each step's JSON
    results = json.loads(raw.read_text())
    w1 = results["runs"][0]["w1"]
    for key in ("atp-c10", "atp-c100", "atp-c1000-noop", "atp-grpc"):
        assert w1[key]["processed"] == w1[key]["tasks"] == 300, (key, log)
        assert w1[key]["process_per_s"] > 0
    assert w1["atp-c10"]["incr_count"] == 300  # the handler's one INCR per task
    enqueue = results["runs"][0]["enqueue"]["atp"]
    kinds = ("sequential_per_s", "batched_per_s", "concurrent_per_s", "concurrent_1000_per_s")
    assert all(enqueue[k] > 0 for k in kinds), log
    w3 = results["w3"]["atp"]
    # the kill lands half a task after the third start: a slow start can let one finish first
    assert 1 <= w3["interrupted"] <= 3, log
    assert w3["unfinished"] == 0 and w3["not_recovered"] == 0, log
    assert 0 < w3["restart_s"] < w3["cap_s"], log
    assert 0 <= w3["released_s"] <= w3["restart_s"], log  # the server's view, from GetTask
    text = out.read_text()
    c10 = f"{w1['atp-c10']['process_per_s']:,.0f}"
    assert f"| atp: SDK `Worker(addr, concurrency=N)`, a plain `def` handler | {c10} |" in text
    assert f"| atp | {enqueue['sequential_per_s']:,.0f} (`Client.enqueue()`) |" in text
    assert f"| atp (lease 2 s) | {w3['interrupted']} | {w3['restart_s']:.1f} s |" in text
    assert "a --short smoke run" in text
