"""`atp workflow put|get|list|delete` and `atp run start|get|list|cancel|signal` over gRPC.

`add_workflow_verbs` / `add_run_verbs` put the verbs under their command in the one `atp` parser
(appliance/commands.py, whose common flags --addr, --config, --token, --timeout and --json every
verb takes); each verb runs with the SDK's blocking Client (`run`) and raises the SDK's errors,
which commands.py turns into exit codes. Imports neither grpc nor the store nor redis.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any, TextIO

import yaml
from google.protobuf import json_format

from appliance import times
from appliance.client.sync import Client
from appliance.commands import UsageError, count, paging_flags
from appliance.proto import queue_pb2 as pb
from appliance.schedule_commands import as_dict

WORKFLOW_VERBS = {
    "put": "store a new version of a workflow from a YAML or JSON file ('-': stdin)",
    "get": "show a workflow's definition (the latest version, or --version N)",
    "list": "list workflows (their latest versions)",
    "delete": "delete a workflow (runs in flight finish)",
}
RUN_VERBS = {
    "start": "start a run of a workflow (--id makes it idempotent)",
    "get": "show a run: its state and each step's state, output and error",
    "list": "list runs, newest first (--workflow, --state)",
    "cancel": "cancel a run's waiting and scheduled steps",
    "signal": "send a run the signal a step waits for",
}
Verb = Callable[[Client, argparse.Namespace, TextIO], None]


def _verb_adder(
    cmd: argparse.ArgumentParser, common: argparse.ArgumentParser, summaries: dict[str, str]
) -> Callable[[str, Verb], argparse.ArgumentParser]:
    """A function that adds verb `name` (described by `summaries`) running `run`."""
    sub = cmd.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, run: Verb) -> argparse.ArgumentParser:
        what = summaries[name]
        p = sub.add_parser(name, parents=[common], help=what, description=what)
        p.set_defaults(run=lambda client, ns: run(client, ns, sys.stdout))
        return p

    return verb


def add_workflow_verbs(cmd: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verb = _verb_adder(cmd, common, WORKFLOW_VERBS)

    verb("put", _put).add_argument(
        "file", help="The definition, YAML or JSON: {name, steps: [{name, topic, ...}]}."
    )
    get = verb("get", _get)
    get.add_argument("name", help="The workflow's name: 1-48 of [A-Za-z0-9_-].")
    get.add_argument(
        "--version", type=count, default=0, help="Which version (default: the latest)."
    )
    verb("list", _list)
    verb("delete", _delete).add_argument("name", help="The workflow's name: 1-48 of [A-Za-z0-9_-].")


def add_run_verbs(cmd: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    verb = _verb_adder(cmd, common, RUN_VERBS)

    start = verb("start", _start)
    start.add_argument("workflow", help="The workflow to run (its latest version).")
    start.add_argument("--input", default="", help="The run's input (JSON text; '-': stdin).")
    start.add_argument("--id", default="", help="Run id: the same id again starts nothing.")
    for name, run in (("get", _run_get), ("cancel", _cancel)):
        verb(name, run).add_argument("run_id", help="The run's id, as run start printed it.")
    runs = verb("list", _runs)
    runs.add_argument("--workflow", default="", help="Only this workflow's runs.")
    runs.add_argument("--state", default="", help="PENDING, RUNNING, SUCCEEDED, FAILED, CANCELED.")
    paging_flags(runs, 0, "Runs per page (default 100).")
    signal = verb("signal", _signal)
    signal.add_argument("run_id", help="The run's id, as run start printed it.")
    signal.add_argument("name", help="The signal's name (a step's `signal`).")
    signal.add_argument("--payload", default="", help="The signal's payload (the step's output).")


def _print(ns: argparse.Namespace, out: TextIO, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True) if ns.json else text, file=out)


def _read(name: str) -> str:
    if name == "-":
        return sys.stdin.read()
    try:
        with open(name, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {name}: {exc.strerror}") from None


def _put(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    try:
        raw = yaml.safe_load(_read(ns.file))
        workflow = json_format.ParseDict(raw, pb.Workflow())
    except (yaml.YAMLError, json_format.ParseError, TypeError, AttributeError) as exc:
        raise UsageError(f"{ns.file} is not a workflow definition: {exc}") from None
    version = client.put_workflow(workflow)
    _print(ns, out, {"name": workflow.name, "version": version}, f"{workflow.name} v{version}")


def _get(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    wf = client.get_workflow(ns.name, ns.version)
    if ns.json:
        print(json.dumps(as_dict(wf), sort_keys=True), file=out)
        return
    print(f"{wf.name} v{wf.version}", file=out)
    for s in wf.steps:
        what = f"signal {s.signal}" if s.signal else f"-> {s.topic}"
        after = (
            f" after {('any of ' if s.after_any else '')}{', '.join(s.after)}" if s.after else ""
        )
        delay = f" +{times.duration_text(s.delay_ms)}" if s.delay_ms else ""
        print(f"  {s.name}: {what}{after}{delay}", file=out)


def _list(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    workflows = client.list_workflows()
    text = "\n".join(f"{w.name} v{w.version} ({len(w.steps)} steps)" for w in workflows)
    _print(ns, out, {"workflows": [as_dict(w) for w in workflows]}, text or "(none)")


def _delete(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    client.delete_workflow(ns.name)
    _print(ns, out, {"name": ns.name, "deleted": True}, f"deleted {ns.name}")


def _start(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    run_input = _read("-") if ns.input == "-" else ns.input
    run_id = client.start_run(ns.workflow, run_input, ns.id)
    _print(ns, out, {"run_id": run_id}, run_id)


def _run_get(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    run = client.get_run(ns.run_id)
    if ns.json:
        print(json.dumps(as_dict(run), sort_keys=True), file=out)
        return
    state = pb.RunState.Name(run.state).removeprefix("RUN_")
    print(f"{run.id}  {run.workflow} v{run.version}  {state}  {run.error}".rstrip(), file=out)
    for s in run.steps:
        step = pb.StepState.Name(s.state).removeprefix("STEP_")
        detail = s.error or s.output
        print(f"  {s.name:<16} {step:<10} {detail}".rstrip(), file=out)


def _runs(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    page = client.list_runs(ns.workflow, ns.state, ns.limit, ns.cursor)
    if ns.json:
        print(json.dumps(as_dict(page), sort_keys=True), file=out)
        return
    for r in page.runs:
        state = pb.RunState.Name(r.state).removeprefix("RUN_")
        print(f"{r.id}  {r.workflow} v{r.version}  {state}  {times.iso(r.created_ms)}", file=out)
    if page.next_page_token:
        print(f"more: --cursor {page.next_page_token}", file=out)


def _cancel(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    now = client.cancel_run(ns.run_id)
    text = f"canceled {ns.run_id}" if now else f"{ns.run_id} was canceled before"
    _print(ns, out, {"run_id": ns.run_id, "canceled": now}, text)


def _signal(client: Client, ns: argparse.Namespace, out: TextIO) -> None:
    kept = client.signal_run(ns.run_id, ns.name, ns.payload)
    text = f"signal {ns.name} sent" if kept else f"signal {ns.name} had come before"
    _print(ns, out, {"run_id": ns.run_id, "signal": ns.name, "duplicate": not kept}, text)
