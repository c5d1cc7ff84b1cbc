"""`just load` with its default target, end to end with real processes: loadtest/load.py starts
`atp --role=all` (embedded Redis in a throwaway data dir), locust loads it for a few seconds
with every call succeeding, and afterwards the appliance and all its children are gone."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STARTED = re.compile(
    r"\[load\] started atp --role=all pid (\d+) on \S+ "
    r"\(embedded Redis in (\S+); children: ([^)]*)\)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is gone for our purposes (it runs nothing); its parent has yet to reap it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_default_target_is_role_all_loaded_without_failures_and_ended(tmp_path: Path) -> None:
    prefix = tmp_path / "load"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATP_")}
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "loadtest" / "load.py"),
            "--run-time=4s",
            "--users=2",
            "--spawn-rate=2",
            f"--csv={prefix}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]

    started = STARTED.search(out)
    assert started, out[-4000:]
    supervisor, data_dir = int(started[1]), Path(started[2])
    children = {name: int(pid) for name, pid in re.findall(r"([\w-]+) pid (\d+)", started[3])}
    assert {"redis", "server-1", "scheduler-1", "watchdog-1", "worker-1"} <= set(children)
    assert f"[load] atp --role=all pid {supervisor} ended: exit code 0" in out

    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {row["Name"]: row for row in csv.DictReader(f)}
    total = rows["Aggregated"]
    assert int(total["Request Count"]) > 0
    assert int(total["Failure Count"]) == 0, out[-4000:]
    assert {"Enqueue", "Retrieve"} <= set(rows)  # producers and locust's workers both ran
    assert re.search(r"atp tasks: [\d,]+ enqueued .*, [\d,]+ acked", out)

    assert not alive(supervisor)
    leftover = {name: pid for name, pid in children.items() if alive(pid)}
    assert not leftover, leftover
    assert not data_dir.exists()
