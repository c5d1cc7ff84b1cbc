"""The console's workflow pages and the visual editor's calls (ADR 0018): definitions drawn as
graphs with their versions and diffs, runs listed and filtered, a run's coloured graph, timeline,
outputs and errors, cancel and signal; the editor's check, save and start. Everything through
the SDK with the viewer's own token (so a viewer's action is the API's PERMISSION_DENIED).

Must not import redis, grpc or the store.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from appliance.client import RpcFailed, drafts
from appliance.console import flows
from appliance.console.app import PREFIX, Console, Request, Response, redirect
from appliance.errors import AtpError, NotFound

RUN_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED")
RUNS_PAGE = 25
VERSIONS_SHOWN = 50  # the version list goes back this far

Route = Callable[[Request, list[str]], Response]


def routes(console: Console) -> dict[tuple[str, str], Route]:
    pages = Pages(console)
    return {
        ("GET", "workflows"): pages.workflows,
        ("POST", "workflows"): pages.workflow_action,
        ("GET", "runs"): pages.runs,
        ("POST", "runs"): pages.run_action,
        ("GET", "editor"): pages.editor,
        ("POST", "editor"): pages.editor_call,
    }


def _q(value: str) -> str:
    return quote(value, safe="")


class Pages:
    def __init__(self, console: Console) -> None:
        self.console = console

    def _page(self, name: str, request: Request, code: int = 200, **values: Any) -> Response:
        return self.console.page(name, request, code, **values)

    def _json(self, value: Any, code: int = 200) -> Response:
        return Response(code, json.dumps(value).encode(), "application/json")

    # -- definitions ---------------------------------------------------------------------------

    def workflows(self, request: Request, parts: list[str]) -> Response:
        client = self.console.client(request.token)
        if not parts:
            found = sorted(client.list_workflows(), key=lambda w: w.name)
            return self._page("workflows.html", request, workflows=found)
        name = parts[0]
        latest = client.get_workflow(name)
        shown = client.get_workflow(name, request.int_arg("version", 0) or latest.version)
        against = request.int_arg("diff", shown.version - 1)
        older = client.get_workflow(name, against) if 0 < against != shown.version else None
        versions = range(latest.version, max(latest.version - VERSIONS_SHOWN, 0), -1)
        return self._page(
            "workflow.html",
            request,
            workflow=shown,
            latest=latest.version,
            versions=list(versions),
            against=older.version if older else 0,
            diff=flows.diff(older, shown),
            yaml=flows.to_yaml(drafts.draft_from_pb(shown)),
            graph=flows.script_json(flows.graph(shown)),
        )

    def workflow_action(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2 or parts[1] != "start":
            return self._page("error.html", request, 404, message="start a run of a workflow")
        client = self.console.client(request.token)
        run_id = client.start_run(parts[0], request.form.get("input", ""))
        self._done(request, f"started run {run_id}")
        return redirect(f"/runs/{_q(run_id)}")

    # -- runs ----------------------------------------------------------------------------------

    def runs(self, request: Request, parts: list[str]) -> Response:
        if parts:
            return self.run(request, parts[0])
        client = self.console.client(request.token)
        workflow, state = request.arg("workflow"), request.arg("state").upper()
        state = state if state in RUN_STATES else ""
        found = client.list_runs(workflow, state, RUNS_PAGE, request.arg("page_token"))
        names = sorted(w.name for w in client.list_workflows())
        following = ""
        if found.next_page_token:
            query = {"workflow": workflow, "state": state, "page_token": found.next_page_token}
            following = urlencode(query)
        return self._page(
            "runs.html",
            request,
            runs=list(found.runs),
            workflow=workflow,
            state=state,
            states=RUN_STATES,
            names=names,
            following=following,
            first=not request.arg("page_token"),
            run_state=drafts.run_state,
        )

    def run(self, request: Request, run_id: str) -> Response:
        client = self.console.client(request.token)
        run = client.get_run(run_id)
        try:
            workflow = client.get_workflow(run.workflow, run.version)
        except NotFound:  # deleted since: the run's steps alone, no edges
            workflow = drafts.bare(run.workflow, [s.name for s in run.steps])
        name = "run_body.html" if request.headers.get("hx-request") else "run.html"
        now_ms = int(time.time() * 1000)
        return self._page(
            name,
            request,
            run=run,
            state=drafts.run_state(run),
            finished=drafts.run_state(run) in drafts.FINISHED_RUN,
            steps=[(s, drafts.step_state(s)) for s in run.steps],
            signals=sorted({s.signal for s in workflow.steps if s.signal}),
            timeline=flows.timeline(run, now_ms),
            graph=flows.script_json(flows.graph(workflow, run)),
        )

    def run_action(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2 or parts[1] not in ("cancel", "signal"):
            return self._page("error.html", request, 404, message="cancel or signal a run")
        run_id, action = parts
        client = self.console.client(request.token)
        if action == "cancel":
            done = client.cancel_run(run_id)
            self._done(request, f"run {run_id} canceled" if done else "canceled before")
        else:
            name = request.form.get("name", "").strip()
            kept = client.signal_run(run_id, name, request.form.get("payload", ""))
            self._done(request, f"signal {name} sent" if kept else f"signal {name} came before")
        return redirect(f"/runs/{_q(run_id)}")

    # -- the editor ----------------------------------------------------------------------------

    def editor(self, request: Request, _: list[str]) -> Response:
        name = request.arg("workflow")
        draft: flows.Draft = {"name": "", "steps": []}
        version = 0
        if name:
            stored = self.console.client(request.token).get_workflow(name)
            draft, version = drafts.draft_from_pb(stored), stored.version
        return self._page("editor.html", request, draft=flows.script_json(draft), version=version)

    def editor_call(self, request: Request, parts: list[str]) -> Response:
        """check, save or start, answered as JSON: {ok, error, ...}."""
        call = {"check": self._check, "save": self._save, "start": self._start}.get(
            parts[0] if parts else ""
        )
        if call is None:
            return self._json({"ok": False, "error": "check, save or start"}, 404)
        try:
            return self._json({"ok": True, **call(request)})
        except (AtpError, ValueError) as exc:
            status = exc.status if isinstance(exc, RpcFailed) else type(exc).__name__
            return self._json({"ok": False, "error": str(exc), "status": status})

    def _draft(self, request: Request) -> Any:
        try:
            return json.loads(request.form.get("definition", ""))
        except json.JSONDecodeError as exc:
            raise ValueError(f"the definition is not JSON: {exc}") from None

    def _check(self, request: Request) -> dict[str, Any]:
        draft = self._draft(request)
        drafts.checked(draft, self.console.settings.payload_max_bytes)
        return {"yaml": flows.to_yaml(draft)}

    def _save(self, request: Request) -> dict[str, Any]:
        client = self.console.client(request.token)
        draft = self._draft(request)
        message = drafts.draft_to_pb(draft, self.console.settings.payload_max_bytes)
        try:
            before: Any = client.get_workflow(message.name)
        except NotFound:
            before = None
        version = client.put_workflow(message)
        stored = client.get_workflow(message.name, version)
        lines = flows.diff(before, stored)
        return {"version": version, "diff": lines, "yaml": flows.to_yaml(draft)}

    def _start(self, request: Request) -> dict[str, Any]:
        client = self.console.client(request.token)
        name = request.form.get("workflow", "")
        run_id = client.start_run(name, request.form.get("input", ""))
        return {"run_id": run_id, "url": f"{PREFIX}/runs/{_q(run_id)}"}

    def _done(self, request: Request, message: str) -> None:
        if request.session:
            request.session.flash = message
