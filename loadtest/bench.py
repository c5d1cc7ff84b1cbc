"""`just bench`: W1..W5 for atp and each peer (Celery, arq, BullMQ), one after another, each
against its own fresh redis-server; the runs interleave the systems so the machine's noise
falls on all of them alike. Writes docs/BENCHMARKS.md (loadtest/report.py) and the raw
figures as JSON.

    python loadtest/bench.py --bench-python .bench/venv/bin/python --py-spy .bench/venv/bin/py-spy

Every step is a subprocess with a time limit; a step that fails is reported as failed and the
run goes on. Stdlib only (the drivers import what they need).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import report  # noqa: E402 - found through the sys.path entry above

STEP_LIMIT_S = 600
PEERS = ("celery", "arq", "bullmq")
ATP_W1 = (("sdk", 1), ("sdk", 2), ("grpc", 1), ("grpc", 2))


def step(argv: Sequence[str], label: str) -> dict[str, Any]:
    """Run one driver; its last stdout line is its JSON result."""
    started = time.monotonic()
    print(f"[bench] {label} ...", file=sys.stderr, flush=True)
    try:
        out = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=STEP_LIMIT_S,
            check=False,
            cwd=ROOT,
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {STEP_LIMIT_S} s"}
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        return {"error": f"exit {out.returncode}: {out.stderr.strip()[-600:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    took = time.monotonic() - started
    print(f"[bench] {label}: {took:.1f} s {lines[-1][:160]}", file=sys.stderr, flush=True)
    return result


def atp(workload: str, *extra: str) -> list[str]:
    return [sys.executable, str(HERE / "atp_driver.py"), workload, *extra]


def peer(python: str, name: str, workload: str) -> list[str]:
    return [python, str(HERE / "peers" / "py_peers.py"), name, workload]


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": [], "w4": {}, "w5": None, "profile": None}
    for n in range(args.runs):
        run: dict[str, Any] = {"w1": {}, "w2": {}, "w3": None}
        for mode, servers in ATP_W1:
            key = f"atp-{mode}-{servers}"
            run["w1"][key] = step(
                atp("w1", f"--worker-mode={mode}", f"--servers={servers}"), f"run {n + 1} W1 {key}"
            )
        run["w2"]["atp"] = step(atp("w2", "--worker-mode=sdk"), f"run {n + 1} W2 atp (SDK)")
        run["w2"]["atp-grpc"] = step(
            atp("w2", "--worker-mode=grpc"), f"run {n + 1} W2 atp (gRPC consumers)"
        )
        for name in PEERS:
            run["w1"][name] = step(peer(args.bench_python, name, "w1"), f"run {n + 1} W1 {name}")
            run["w2"][name] = step(peer(args.bench_python, name, "w2"), f"run {n + 1} W2 {name}")
        run["w3"] = step(atp("w3"), f"run {n + 1} W3 atp")
        results["runs"].append(run)
    results["w4"]["atp"] = step(atp("w4"), "W4 atp")
    for name in PEERS:
        results["w4"][name] = step(peer(args.bench_python, name, "w4"), f"W4 {name}")
    if not args.skip_w5:
        results["w5"] = step(atp("w5", "--worker-mode=sdk"), "W5 atp (1,000,000 pending)")
    if args.py_spy:
        profile = [sys.executable, str(HERE / "profiling.py"), f"--py-spy={args.py_spy}"]
        results["profile"] = step(profile, "profile atp server")
    return results


def _run(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip()


def _pip_version(python: str, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return _run([python, "-c", code]) or "?"


def machine(args: argparse.Namespace) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
    except (OSError, IndexError):
        mem_kb = 0
    node_dir = Path(args.node_dir)
    bullmq = "?"
    with_pkg = node_dir / "node_modules" / "bullmq" / "package.json"
    if with_pkg.exists():
        bullmq = json.loads(with_pkg.read_text()).get("version", "?")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "redis": _run(["redis-server", "--version"]).split(" sha=")[0],
        "node": _run(["node", "--version"]),
        "atp_commit": _run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "grpcio": _pip_version(sys.executable, "grpcio"),
        "celery": _pip_version(args.bench_python, "celery"),
        "kombu": _pip_version(args.bench_python, "kombu"),
        "arq": _pip_version(args.bench_python, "arq"),
        "bullmq": bullmq,
        "load_before": os.getloadavg(),
    }


def product_state() -> str:
    """'<HEAD> <tree of appliance/ and proto/>', with '+changes' when those have uncommitted
    edits: the work tree is shared, so the code measured is the tree's, not a commit's."""
    git = ["git", "-C", str(ROOT)]
    head = _run([*git, "rev-parse", "--short", "HEAD"])
    trees = [_run([*git, "rev-parse", f"HEAD:{d}"])[:7] for d in ("appliance", "proto")]
    dirty = _run([*git, "status", "--porcelain", "--", "appliance", "proto"])
    return f"{head} {'/'.join(trees)}" + ("+changes" if dirty else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--bench-python", default=str(ROOT / ".bench" / "venv" / "bin" / "python"))
    p.add_argument("--node-dir", default=str(ROOT / ".bench" / "node"))
    p.add_argument("--py-spy", default="", help="py-spy binary; empty skips the profile")
    p.add_argument("--skip-w5", action="store_true")
    p.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(ROOT / ".bench" / "results.json"))
    p.add_argument("--baseline", default=str(HERE / "baseline.json"), help="'before' figures")
    p.add_argument("--command", default="just bench", help="how this run was started")
    p.add_argument(
        "--render-only", action="store_true", help="re-render --out from --json, no measuring"
    )
    args = p.parse_args()
    baseline = json.loads(Path(args.baseline).read_text()) if Path(args.baseline).exists() else {}
    if args.render_only:
        results = json.loads(Path(args.json).read_text())
        Path(args.out).write_text(report.render(results, baseline))
        print(f"[bench] re-rendered {args.out} from {args.json}", file=sys.stderr)
        return
    os.environ["BENCH_NODE_DIR"] = args.node_dir
    started = time.monotonic()
    info = machine(args)
    info["code_before"] = product_state()
    results = run_all(args)
    info["code_after"] = product_state()
    info["load_after"] = os.getloadavg()
    info["minutes"] = round((time.monotonic() - started) / 60, 1)
    results["machine"] = info
    results["command"] = args.command
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1))
    summary = Path(args.json).with_name("summary.json")
    summary.write_text(json.dumps(report.summary(results), indent=1))
    Path(args.out).write_text(report.render(results, baseline))
    print(f"[bench] wrote {args.out}, {args.json} and {summary}", file=sys.stderr)
    print(f"[bench] {info['minutes']} min", file=sys.stderr)


if __name__ == "__main__":
    main()
