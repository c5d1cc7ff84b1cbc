"""`just bench`: the workloads of docs/BENCHMARKS.md for atp and each peer (Celery, arq,
BullMQ), one after another, each against its own fresh redis-server; the runs interleave the
systems so the machine's noise falls on all of them alike. Writes docs/BENCHMARKS.md
(loadtest/report.py) and the raw figures as JSON.

    python loadtest/bench.py --bench-python .bench/venv/bin/python --py-spy .bench/venv/bin/py-spy
    python loadtest/bench.py --only w1,w3 --systems atp,bullmq      # parts and systems alone
    python loadtest/bench.py --short --systems atp --out /tmp/b.md  # a smoke test in seconds

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
import signal
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
W3_ONLY = ("rq", "saq")  # measured in W3 alone: the issue cites them for crash recovery
SYSTEMS = ("atp", *PEERS, *W3_ONLY)
FAIR_CONCURRENCY = (10, 100)
# W1 rows besides the fair ones (never the headline): atp's SDK Worker at concurrency 1000
# with an async handler that does nothing, and bare gRPC consumers (no SDK).
ATP_W1_EXTRA = {
    "atp-c1000-noop": ("--worker-mode=sdk", "--concurrency=1000", "--handler=noop"),
    "atp-grpc": ("--worker-mode=grpc", "--handler=noop"),
}
PARTS = (
    "w1",
    "enqueue",
    "w2",
    "w3",
    "w4",
    "w5",
    "w6",
    "w7",
    "api",
    "fsync",
    "durability",
    "cluster",
    "profile",
)
W7_SYSTEMS = ("atp", "celery", "bullmq")  # the peers for workflows: chain, FlowProducer


def step(argv: Sequence[str], label: str) -> dict[str, Any]:
    """Run one driver; its last stdout line is its JSON result."""
    return finish(start(argv, label), label)


def start(argv: Sequence[str], label: str) -> tuple[subprocess.Popen[str], float]:
    print(f"[bench] {label} ...", file=sys.stderr, flush=True)
    popen = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    return popen, time.monotonic()


def finish(started: tuple[subprocess.Popen[str], float], label: str) -> dict[str, Any]:
    """Wait for a started driver (bounded by what is left of STEP_LIMIT_S); its result."""
    popen, began = started
    try:
        out, err = popen.communicate(timeout=max(STEP_LIMIT_S - (time.monotonic() - began), 1))
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.communicate()
        return {"error": f"timed out after {STEP_LIMIT_S} s"}
    lines = out.strip().splitlines()
    if popen.returncode != 0 or not lines:
        return {"error": f"exit {popen.returncode}: {err.strip()[-600:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    took = time.monotonic() - began
    print(f"[bench] {label}: {took:.1f} s {lines[-1][:160]}", file=sys.stderr, flush=True)
    return result


class Bench:
    """The drivers' command lines for one bench run's options."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.short = ["--short"] if args.short else []

    def atp(self, workload: str, *extra: str) -> list[str]:
        return [sys.executable, str(HERE / "atp_driver.py"), workload, *extra, *self.short]

    def peer(self, name: str, workload: str, *extra: str) -> list[str]:
        driver = str(HERE / "peers" / "py_peers.py")
        return [self.args.bench_python, driver, name, workload, *extra, *self.short]

    def workflows(self) -> list[str]:
        """atp's W7 (loadtest/workflow_bench.py)."""
        return [sys.executable, str(HERE / "workflow_bench.py"), *self.short]

    def driver(self, system: str, workload: str, *extra: str) -> list[str]:
        return (
            self.atp(workload, *extra) if system == "atp" else self.peer(system, workload, *extra)
        )

    def wants(self, part: str) -> bool:
        return part in self.args.only

    def systems(self, w3: bool = False) -> list[str]:
        return [s for s in SYSTEMS if s in self.args.systems and (w3 or s not in W3_ONLY)]


def w1_round(bench: Bench, n: int) -> dict[str, Any]:
    """The fair W1 (every system at each concurrency, the INCR handler), then atp's extras."""
    out: dict[str, Any] = {}
    for conc in FAIR_CONCURRENCY:
        for system in bench.systems():
            key = f"{system}-c{conc}"
            argv = bench.driver(system, "w1", f"--concurrency={conc}", "--handler=incr")
            out[key] = step(argv, f"run {n} W1 {key} (INCR handler)")
    if "atp" in bench.systems():
        for key, extra in ATP_W1_EXTRA.items():
            out[key] = step(bench.atp("w1", *extra), f"run {n} W1 {key}")
    return out


def each_system(bench: Bench, n: int, workload: str) -> dict[str, Any]:
    return {
        system: step(bench.driver(system, workload), f"run {n} {workload} {system}")
        for system in bench.systems()
    }


def one_run(bench: Bench, n: int) -> dict[str, Any]:
    """One round of the interleaved workloads: every system in turn, each on its own Redis."""
    run: dict[str, Any] = {"w1": {}, "enqueue": {}, "w2": {}, "w6": None, "w7": {}, "api": None}
    atp = "atp" in bench.systems()
    if bench.wants("w1"):
        run["w1"] = w1_round(bench, n)
    if bench.wants("enqueue"):
        run["enqueue"] = each_system(bench, n, "enqueue")
    if bench.wants("w2"):
        run["w2"] = each_system(bench, n, "w2")
    if bench.wants("w6") and atp:
        run["w6"] = step(bench.atp("w6"), f"run {n} W6 atp (lateness under a 1k/s load)")
    if bench.wants("w7"):
        for system in [s for s in bench.systems() if s in W7_SYSTEMS]:
            argv = bench.workflows() if system == "atp" else bench.driver(system, "w7")
            run["w7"][system] = step(argv, f"run {n} W7 {system} (3-step chains)")
    if bench.wants("api") and atp and n <= report.API_RUNS:  # no target rests on them
        run["api"] = step(bench.atp("api"), f"run {n} API rates atp")
    return run


def w3_w4(bench: Bench, results: dict[str, Any]) -> None:
    """W3 once per system, all at the same time (each on its own Redis), with W4 meanwhile:
    W3's figures are lease and stall timeouts of seconds to minutes and its tasks sleep, W4's
    are bytes, so neither is moved by CPU noise, and running them side by side keeps the
    whole bench within its time."""
    started = {}
    if bench.wants("w3"):
        started = {s: start(bench.driver(s, "w3"), f"W3 {s}") for s in bench.systems(w3=True)}
    if bench.wants("w4"):
        for system in bench.systems():
            results["w4"][system] = step(bench.driver(system, "w4"), f"W4 {system}")
    results["w3"] = {s: finish(p, f"W3 {s}") for s, p in started.items()}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    results: dict[str, Any] = {
        "runs": [],
        "w3": {},
        "w4": {},
        "w5": None,
        "fsync": None,
        "durability": None,
        "cluster": None,
        "profile": None,
    }
    results["parts"] = [p for p in PARTS if bench.wants(p)]
    results["systems"] = bench.systems(w3=True)
    results["short"] = bool(args.short)
    w3_w4(bench, results)
    if any(bench.wants(p) for p in ("w1", "enqueue", "w2", "w6", "w7", "api")):
        for n in range(args.runs):
            results["runs"].append(one_run(bench, n + 1))
    if bench.wants("w5") and "atp" in bench.systems():
        extra = ["--w5-backlog=20000", "--w5-runs=1"] if args.short else []
        results["w5"] = step(bench.atp("w5", *extra), "W5 atp (1,000,000 pending)")
    if bench.wants("fsync") and "atp" in bench.systems():
        tasks = ["--tasks=300"] if args.short else []
        fsync = [sys.executable, str(HERE / "fsync_cost.py"), *tasks]
        results["fsync"] = step(fsync, "fsync cost atp (--redis-fsync always vs everysec)")
    for part in ("durability", "cluster"):  # issue 15: docs/SCALING.md
        if bench.wants(part) and "atp" in bench.systems():
            argv = [sys.executable, str(HERE / "scale_bench.py"), part, *bench.short]
            results[part] = step(argv, f"{part} atp (loadtest/scale_bench.py)")
    if bench.wants("profile") and args.py_spy:
        seconds = ["--seconds=2"] if args.short else []
        profile = [sys.executable, str(HERE / "profiling.py"), f"--py-spy={args.py_spy}", *seconds]
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
        "rq": _pip_version(args.bench_python, "rq"),
        "saq": _pip_version(args.bench_python, "saq"),
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


def _names(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> list[str]:
        names = [n.strip().lower() for n in text.split(",") if n.strip()]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {','.join(allowed)}")
        return names

    return parse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=0, help="rounds (default 3; 1 with --short)")
    p.add_argument(
        "--only",
        type=_names(PARTS),
        default=list(PARTS),
        help=f"comma list of the parts to run (default all): {','.join(PARTS)}",
    )
    p.add_argument(
        "--systems",
        type=_names(SYSTEMS),
        default=list(SYSTEMS),
        help=f"comma list of the systems to measure (default all): {','.join(SYSTEMS)}",
    )
    p.add_argument("--short", action="store_true", help="tiny sizes, 1 round: a smoke test")
    p.add_argument("--bench-python", default=str(ROOT / ".bench" / "venv" / "bin" / "python"))
    p.add_argument("--node-dir", default=str(ROOT / ".bench" / "node"))
    p.add_argument("--py-spy", default="", help="py-spy binary; empty skips the profile")
    p.add_argument("--skip-w5", action="store_true", help="the same as leaving w5 out of --only")
    p.add_argument("--out", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    p.add_argument("--json", default=str(ROOT / ".bench" / "results.json"))
    p.add_argument("--baseline", default=str(HERE / "baseline.json"), help="'before' figures")
    p.add_argument("--command", default="just bench", help="how this run was started")
    p.add_argument(
        "--render-only", action="store_true", help="re-render --out from --json, no measuring"
    )
    args = p.parse_args()
    args.runs = args.runs or (1 if args.short else 3)
    if args.skip_w5:
        args.only = [part for part in args.only if part != "w5"]
    known = args.baseline and Path(args.baseline).is_file()
    baseline = json.loads(Path(args.baseline).read_text()) if known else {}
    if args.render_only:
        results = json.loads(Path(args.json).read_text())
        Path(args.out).write_text(report.render(results, baseline))
        print(f"[bench] re-rendered {args.out} from {args.json}", file=sys.stderr)
        return
    os.environ["BENCH_NODE_DIR"] = str(Path(args.node_dir).resolve())
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
