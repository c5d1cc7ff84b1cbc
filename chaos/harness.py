"""Runs scenarios: a fresh topology each, the scenario's faults under load, then heal, drain,
read the final state over gRPC, check the history, and one report row per scenario.

Everything a run starts is stopped in a `finally`, by pid. A run's logs and final state stay in
chaos/results/runs/<stamp>/<scenario>/ (`python -m chaos.checker <that dir>` re-checks one).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import json
import shutil
import time
import traceback
from pathlib import Path

from chaos.checker import Counts, FinalState, Verdict, check, failure_report
from chaos.history import load_history
from chaos.procs import ROOT, wait_for
from chaos.runcheck import RunsFinal, RunVerdict, check_runs, run_failure_report
from chaos.scenarios import Context, Scenario
from chaos.topology import Topology
from chaos.toxics import find_server

RESULTS = ROOT / "chaos" / "results"
PRODUCER_TIMEOUT_S = 90.0
DRAIN_TIMEOUT_S = 60.0


@dataclasses.dataclass(slots=True)
class Outcome:
    scenario: Scenario
    run_dir: Path
    verdict: Verdict | None = None
    heal_to_drain_s: float | None = None
    duration_s: float = 0.0
    error: str = ""  # the harness itself failed (the scenario could not be run)
    details: str = ""  # the failure report (violations and task histories)
    notes: list[str] = dataclasses.field(default_factory=list)
    runs: RunVerdict | None = None  # workflow scenarios: the runs' verdict

    @property
    def ok(self) -> bool:
        runs_ok = not self.scenario.options.workflows or (self.runs is not None and self.runs.ok)
        if self.scenario.measures_loss:  # its broken invariants are the measurement
            return not self.error and self.verdict is not None and runs_ok
        return not self.error and self.verdict is not None and self.verdict.ok and runs_ok


def preflight() -> list[str]:
    """What is missing to run any scenario (empty: ready)."""
    problems = []
    try:
        find_server()
    except RuntimeError as exc:
        problems.append(str(exc))
    if importlib.util.find_spec("toxiproxy") is None:
        problems.append("the toxiproxy-python package is missing: pip install -e '.[chaos]'")
    if shutil.which("redis-server") is None:
        problems.append("redis-server is not installed (apt-get install redis-server)")
    return problems


def run_scenario(scenario: Scenario, runs_dir: Path) -> Outcome:
    run_dir = runs_dir / scenario.name
    outcome = Outcome(scenario, run_dir)
    started = time.monotonic()
    topology = Topology(run_dir, scenario.options)
    final: FinalState | None = None
    runs: RunsFinal | None = None
    try:
        topology.start()
        ctx = Context(topology)
        scenario.run(ctx)
        if not scenario.options.appliance:  # (an appliance run has no proxies)
            topology.toxiproxy.heal()  # whatever the scenario left behind
        healed = ctx.healed_at or time.monotonic()
        outcome.notes = ctx.notes
        final, runs = _settle(topology, ctx, healed, outcome)
    except Exception:
        outcome.error = traceback.format_exc(limit=8)
    finally:
        topology.stop()
        outcome.duration_s = time.monotonic() - started
        outcome.notes += log_errors(run_dir)
    if final is not None:
        history = load_history(run_dir)
        outcome.verdict = check(history, final, scenario.restart_within_ms)
        if not outcome.verdict.ok:
            outcome.details = failure_report(outcome.verdict, history, final)
        if history.redis_kills:
            outcome.notes.append(loss_note(outcome.verdict.counts))
        if runs is not None:
            outcome.runs = check_runs(history, runs)
            if not outcome.runs.ok:
                report = run_failure_report(outcome.runs, history, runs)
                outcome.details = "\n".join(filter(None, [outcome.details, report]))
    return outcome


def loss_note(c: Counts) -> str:
    """What the Redis master kills cost: acknowledged enqueues and Acks lost, and the window."""
    window = "-" if c.loss_window_ms is None else f"{c.loss_window_ms} ms"
    return (
        f"across the master kills: {c.lost} acknowledged enqueue(s) lost, {c.unindexed} found"
        f" only with their topic (id index lost), {c.acks_lost} accepted Ack(s) undone,"
        f" {c.stuck} stuck; loss window (oldest lost acknowledgement before its kill): {window}"
    )


def log_errors(run_dir: Path) -> list[str]:
    """One note per atp, worker or producer output with error-level log lines or tracebacks
    (not invariant breaks, but worth a look): the count and the first distinct messages."""
    notes = []
    for path in sorted(run_dir.glob("*.out")):
        if path.stem in ("toxiproxy", "redis"):  # their own complaints mirror the faults
            continue
        messages: list[str] = []
        count = 0
        for line in path.read_text(errors="replace").splitlines():
            text = _error_text(line)
            if text is None:
                continue
            count += 1
            if text not in messages:
                messages.append(text)
        if count:
            shown = "; ".join(repr(m) for m in messages[:3])
            notes.append(f"{path.stem}: {count} error log line(s), e.g. {shown}")
    return notes


def _error_text(line: str) -> str | None:
    if line.startswith("Traceback"):
        return "Traceback"
    if not line.startswith("{"):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("level") not in ("error", "critical"):
        return None
    return str(record.get("message", "")).split("\n")[0][:120]


def _settle(
    topology: Topology, ctx: Context, healed: float, outcome: Outcome
) -> tuple[FinalState, RunsFinal | None]:
    """Wait for the producers, then the runs (workflow scenarios) and the drain; stop the
    workers; read the final state."""
    assert topology.api is not None
    for child in topology.children:
        if child.name.startswith("producer"):
            child.proc.wait(PRODUCER_TIMEOUT_S)  # type: ignore[union-attr]
    runs = _settle_runs(topology, outcome) if topology.options.workflows else None
    topics = ctx.topology.options.topics
    if topology.wait_drained(topics, DRAIN_TIMEOUT_S) is not None:
        outcome.heal_to_drain_s = time.monotonic() - healed
    else:
        outcome.notes.append(f"not drained {DRAIN_TIMEOUT_S:.0f} s after the producer finished")
    for worker in [*topology.workers, *([topology.solo] if topology.solo else [])]:
        worker.stop(30)
    history = load_history(topology.run_dir)
    ids = set(history.enqueued) | {e.task for e in history.executions}
    final = topology.api.final_state(ids, topics, ctx.schedules)
    (topology.run_dir / "final.json").write_text(json.dumps(final.to_json(), indent=1))
    return final, runs


def _settle_runs(topology: Topology, outcome: Outcome) -> RunsFinal:
    """Wait until every started run finished with each step's outcome recorded (the advancer
    polls running steps); read every run's GetRun; keep them with the definitions in runs.json."""
    from chaos.flows import FLOWS  # the definitions the run producer put

    assert topology.api is not None
    api = topology.api
    ids = list(load_history(topology.run_dir).runs)
    if not wait_for(lambda: not api.unsettled(ids), DRAIN_TIMEOUT_S, pause=0.5):
        left = api.unsettled(ids)
        outcome.notes.append(f"{len(left)} run(s) not settled {DRAIN_TIMEOUT_S:.0f} s after")
    final = RunsFinal(dict(FLOWS), api.runs(ids))
    (topology.run_dir / "runs.json").write_text(json.dumps(final.to_json(), indent=1))
    return final


# -- the report ---------------------------------------------------------------------------

HEADER = (
    "| scenario | tasks | succeeded | dead | canceled | lost | stuck | executions"
    " | duplicates (lease-expiry explained) | early starts | after-deadline starts (skipped)"
    " | SIGKILL -> restart, max (tasks cut) | stale acks refused"
    " | unrecorded deliveries | heal -> drained | run time | result |"
)
RULE = "|" + "---|" * 17


def row(o: Outcome) -> str:
    name = o.scenario.name
    if o.verdict is None:
        return f"| {name} |" + " - |" * 14 + f" {o.duration_s:.0f} s | ERROR |"
    c = o.verdict.counts
    drain = f"{o.heal_to_drain_s:.1f} s" if o.heal_to_drain_s is not None else "not drained"
    result = "pass" if o.ok else f"FAIL ({len(o.verdict.violations)})"
    if o.scenario.measures_loss and o.ok:
        result = f"measured ({len(o.verdict.violations)} broken)"
    restart = "-"
    if c.interrupted:
        slowest = "never" if c.restart_max_ms is None else f"{c.restart_max_ms} ms"
        restart = f"{slowest} ({c.interrupted})"
    return (
        f"| {name} | {c.tasks} | {c.succeeded} | {c.dead} | {c.canceled} | {c.lost} | {c.stuck}"
        f" | {c.executions} | {c.duplicates} ({c.explained}) | {c.early}"
        f" | {c.after_deadline} ({c.skipped}) | {restart} | {c.stale_refused}"
        f" | {c.unrecorded} | {drain} | {o.duration_s:.0f} s | {result} |"
    )


def table(outcomes: list[Outcome]) -> str:
    lines = [HEADER, RULE, *(row(o) for o in outcomes)]
    flows = [o for o in outcomes if o.scenario.options.workflows]
    if flows:
        lines += ["", RUN_HEADER, RUN_RULE, *(run_row(o) for o in flows)]
    return "\n".join(lines)


RUN_HEADER = (
    "| workflow scenario | runs | succeeded | failed | canceled | unsettled | steps finished"
    " | step executions (re-runs) | on_failure ran"
    " | signal steps: in time / timed out (racing, late)"
    " | atp SIGKILLs | queue violations | run violations | run time | result |"
)
RUN_RULE = "|" + "---|" * 15


def run_row(o: Outcome) -> str:
    """The workflow table's row: runs and steps (chaos/runcheck.py's counts)."""
    name = o.scenario.name
    if o.runs is None or o.verdict is None:
        return f"| {name} |" + " - |" * 12 + f" {o.duration_s:.0f} s | ERROR |"
    c = o.runs.counts
    result = "pass" if o.ok else "FAIL"
    return (
        f"| {name} | {c.runs} | {c.succeeded} | {c.failed} | {c.canceled} | {c.unsettled}"
        f" | {c.steps} | {c.executions} ({c.reruns}) | {c.on_failure_ran}"
        f" | {c.signals_in_time} / {c.timeouts} ({c.signals_racing}, {c.signals_late})"
        f" | {c.server_kills} | {len(o.verdict.violations)} | {len(o.runs.violations)}"
        f" | {o.duration_s:.0f} s | {result} |"
    )


def write_results(outcomes: list[Outcome], command: str, stamp: str, total_s: float) -> Path:
    """Append this run's table (and any failure) to chaos/results/<date>.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{dt.date.today().isoformat()}.md"
    lines = [
        f"## {stamp} — `{command}` — {total_s:.0f} s",
        "",
        table(outcomes),
        "",
    ]
    for o in outcomes:
        lines.append(f"- {o.scenario.name}: {o.scenario.summary}")
        lines += [f"  - {n}" for n in o.notes]
    for o in outcomes:
        if o.error or o.details:
            lines += ["", f"### {o.scenario.name}", "```", o.error or o.details[:20000], "```"]
    new = not path.exists()
    with path.open("a", encoding="utf-8") as f:
        if new:
            f.write(f"# atp chaos results, {dt.date.today().isoformat()}\n\n")
        f.write("\n".join(lines) + "\n\n")
    return path
