"""`python -m chaos [scenario ...]` (all when none is named), `--quick` for the CI subset,
`--list` to show them. Exits 1 when any invariant is broken (or a scenario could not run)."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import signal
import sys
import time
from pathlib import Path

from chaos.harness import RESULTS, row, table, write_results
from chaos.scenarios import QUICK, SCENARIOS

KEEP_RUNS = 10  # run directories (logs, Redis data) kept under chaos/results/runs/


def prune(runs: Path, keep: int) -> None:
    """Remove all but the newest `keep` run directories (only ours: named by their stamp)."""
    if not runs.is_dir():
        return
    stamps = sorted(p for p in runs.iterdir() if p.is_dir() and p.name[:8].isdigit())
    for old in stamps[: max(len(stamps) - keep, 0)]:
        shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    p.add_argument("scenarios", nargs="*", help=f"any of: {', '.join(SCENARIOS)}")
    p.add_argument("--quick", action="store_true", help=f"the CI subset: {', '.join(QUICK)}")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ns = p.parse_args(argv)
    if ns.list:
        for name, s in SCENARIOS.items():
            print(f"{name:<16} {'(quick) ' if s.quick else ''}{s.summary}")
        return 0
    names = list(ns.scenarios) or (QUICK if ns.quick else list(SCENARIOS))
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(unknown)}; --list shows them")
    from chaos.harness import preflight, run_scenario

    problems = preflight()
    if problems:
        print("chaos: cannot run:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    # SIGTERM (a CI timeout) unwinds like Ctrl-C, so every `finally` ends its children.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    prune(RESULTS / "runs", KEEP_RUNS - 1)
    runs_dir = RESULTS / "runs" / stamp
    started = time.monotonic()
    outcomes = []
    for name in names:
        print(f"== {name}: {SCENARIOS[name].summary}", flush=True)
        outcome = run_scenario(SCENARIOS[name], runs_dir)
        outcomes.append(outcome)
        print(row(outcome), flush=True)
        for note in outcome.notes:
            print(f"   {note}")
        if outcome.error:
            print(outcome.error, file=sys.stderr)
        if outcome.details:
            print(outcome.details, file=sys.stderr)
    total = time.monotonic() - started
    command = "python -m chaos " + " ".join(argv if argv is not None else sys.argv[1:])
    path = write_results(outcomes, command.strip(), stamp, total)
    print(
        f"\n{table(outcomes)}\n\n{len(outcomes)} scenario(s) in {total:.0f} s; "
        f"logs in {runs_dir}; report in {path}"
    )
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
