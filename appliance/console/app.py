"""The console's HTTP side (ADR 0011): routes, the sign-in, sessions and CSRF, rendering.

Pages are rendered here with Jinja2 (autoescaped) from templates/; static/ holds the vendored
htmx. Every read and action goes through the SDK with the viewer's own token (views.py). Must
not import redis, grpc or the store.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import mimetypes
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import jinja2

from appliance import auth
from appliance.client import Client, DeadLetter, RpcFailed, Tls
from appliance.config import Settings
from appliance.console import views
from appliance.console.sessions import COOKIE, Session, Sessions, cookie_header
from appliance.errors import (
    AtpError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from appliance.model import TaskState

log = logging.getLogger(__name__)
PREFIX = "/console"
CALL_TIMEOUT_S = 10.0
FORM_MAX_BYTES = 64 * 1024


@dataclasses.dataclass
class Request:
    method: str
    path: str  # below PREFIX, e.g. "/topic/x"
    query: dict[str, str]
    form: dict[str, str]
    headers: dict[str, str]  # lower-case names
    peer: str  # the browser's address (X-Forwarded-For from the supervisor's proxy)
    session: Session | None = None
    token: str = ""

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, default)

    def int_arg(self, name: str, default: int) -> int:
        try:
            return int(self.query.get(name, ""))
        except ValueError:
            return default


@dataclasses.dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)


def redirect(path: str) -> Response:
    return Response(303, headers=[("Location", PREFIX + path)])


def parse_form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


class Console:
    """One per console process: sessions, one SDK client per token, the stats cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions = Sessions()
        self.stats = views.StatsCache()
        self._clients: dict[str, Client] = {}
        self.tls = Tls.from_settings(settings)
        self.templates = jinja2.Environment(
            loader=jinja2.FunctionLoader(_template),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["q"] = lambda v: quote(str(v), safe="")
        self.routes: dict[tuple[str, str], Callable[[Request, list[str]], Response]] = {
            ("GET", ""): self.overview,
            ("GET", "summary"): self.summary,
            ("GET", "topic"): self.topic,
            ("POST", "topic"): self.topic_action,
            ("GET", "task"): self.task,
            ("POST", "task"): self.task_action,
            ("GET", "dead"): self.dead,
            ("POST", "dead"): self.dead_action,
            ("GET", "schedules"): self.schedules,
            ("POST", "schedules"): self.schedule_action,
            ("GET", "workers"): self.workers,
            ("GET", "login"): self.login_page,
            ("POST", "login"): self.login,
            ("POST", "logout"): self.logout,
        }
        self.closing: list[Callable[[], None]] = []
        from appliance.console import live, workflows  # their pages build on this module

        self.routes.update(workflows.routes(self))
        self.routes.update(live.routes(self))

    def close(self) -> None:
        for done in self.closing:
            done()
        for client in self._clients.values():
            client.close()

    # -- who is asking -------------------------------------------------------------------------

    def is_open(self, peer: str) -> bool:
        """Open as the API is: on loopback, with no tokens configured and an API that asks for
        none there. Anything else signs in with a token."""
        api_open = not self.settings.tokens and not auth.needs_bootstrap(
            self.settings.grpc_addr, False, self.settings.insecure
        )
        return api_open and auth.is_loopback(f"{peer}:0")

    def client(self, token: str) -> Client:
        found = self._clients.get(token)
        if found is None:
            found = Client(
                self.settings.api_target, token=token or None, tls=self.tls, timeout=CALL_TIMEOUT_S
            )
            self._clients[token] = found
        return found

    # -- the request cycle ---------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path.startswith("/static/"):
            return self.static(request.path.removeprefix("/static/"))
        cookie = _cookie(request.headers.get("cookie", ""))
        session = self.sessions.get(cookie)
        fresh = session is None
        request.session = session = session or self.sessions.new()
        response = self._guarded(request, session)
        if fresh:
            response.headers.append(("Set-Cookie", cookie_header(session)))
        response.headers.append(("Cache-Control", "no-store"))
        return response

    def _guarded(self, request: Request, session: Session) -> Response:
        refused = self._who(request, session)
        if refused is not None:
            return refused
        head, _, rest = request.path.strip("/").partition("/")
        route = self.routes.get((request.method, head))
        if route is None:
            return self.page("error.html", request, 404, message=f"no page {request.path}")
        try:
            return route(request, [unquote(p) for p in rest.split("/") if p])
        except PermissionDenied as exc:
            return self.page("error.html", request, 403, message=str(exc))
        except Unauthenticated:
            session.token = None
            return redirect("/login")
        except NotFound as exc:
            return self.page("error.html", request, 404, message=str(exc))
        except RpcFailed as exc:
            if exc.status == "UNAUTHENTICATED":
                session.token = None
                return redirect("/login")
            return self.page("error.html", request, 502, message=f"{exc.status}: {exc}")
        except AtpError as exc:
            return self.page("error.html", request, 400, message=str(exc))

    def _who(self, request: Request, session: Session) -> Response | None:
        """Set the token this request calls the API with, or answer a refusal (a POST without
        its CSRF token, a foreign Host on the open console) or the way to the sign-in."""
        if request.method == "POST":
            refused = self._csrf_refusal(request, session)
            if refused:
                return self.page("error.html", request, 403, message=refused)
        if self.is_open(request.peer):
            if not _loopback_host(request.headers.get("host", "")):
                # a page elsewhere that re-pointed its own name at 127.0.0.1 (DNS rebinding)
                # would read this open console, CSRF tokens included: only loopback names pass
                return self.page("error.html", request, 403, message="refused: unexpected Host")
            request.token = self.settings.token or auth.local_token(self.settings)
        elif session.token is None and request.path != "/login":
            return redirect("/login")
        else:
            request.token = session.token or ""
        return None

    def _csrf_refusal(self, request: Request, session: Session) -> str:
        origin = request.headers.get("origin", "")
        host = request.headers.get("host", "")
        if origin and origin != "null" and urlsplit(origin).netloc != host:
            return f"refused: the request comes from another site ({origin})"
        if not session.csrf_ok(request.form.get("csrf", "")):
            return "refused: missing or wrong CSRF token (reload the page and try again)"
        return ""

    def page(self, name: str, request: Request, code: int = 200, **values: Any) -> Response:
        session = request.session
        values.setdefault("flash", session.take_flash() if session else "")
        html = self.templates.get_template(name).render(
            prefix=PREFIX,
            csrf=session.csrf if session else "",
            signed_in=bool(session and session.token),
            **values,
        )
        return Response(code, html.encode())

    def static(self, name: str) -> Response:
        if "/" in name or name.startswith("."):
            return Response(404, b"not found\n", "text/plain")
        resource = importlib.resources.files("appliance.console").joinpath("static", name)
        if not resource.is_file():
            return Response(404, b"not found\n", "text/plain")
        kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
        headers = [("Cache-Control", "public, max-age=3600")]
        return Response(200, resource.read_bytes(), kind, headers)

    # -- pages ---------------------------------------------------------------------------------

    def overview(self, request: Request, _: list[str]) -> Response:
        client = self.client(request.token)
        size = request.int_arg("size", 50)
        size = size if size in views.PAGE_SIZES else 50
        q, sort = request.arg("q"), request.arg("sort", "topic")
        desc = request.arg("dir", "asc") == "desc"
        if not q and sort == "topic" and not desc and "page" not in request.query:
            shown = views.first_pages(client, size, request.arg("after"))
        else:
            rows = self.stats.rows(client, request.token)
            page = request.int_arg("page", 1)
            shown = views.overview(rows, q, sort, desc, page, size, views.leader(client))
        name = "overview_rows.html" if request.headers.get("hx-request") else "overview.html"
        values: dict[str, Any] = {"view": shown, "q": q, "sort": sort, "desc": desc, "size": size}
        return self.page(name, request, after=request.arg("after"), **values)

    def summary(self, request: Request, _: list[str]) -> Response:
        """The overview's totals over every topic, fetched by the page after its first paint."""
        client = self.client(request.token)
        rows = self.stats.rows(client, request.token)
        found = views.summary(rows, request.arg("q"), views.leader(client))
        found = dataclasses.replace(found, workers=views.connected(client))
        return self.page("summary.html", request, summary=found)

    def topic(self, request: Request, parts: list[str]) -> Response:
        """A topic's figures and its pending, running or dead tasks, a page at a time, with
        the pending and running ones searched by id (a prefix)."""
        if len(parts) != 1:
            return self.page("error.html", request, 404, message="which topic?")
        client = self.client(request.token)
        topic, show = parts[0], request.arg("show", "pending")
        show = show if show in TOPIC_TABS else "pending"
        stats = client.stats([topic])
        figures = views.row(stats.topics[0], stats.now_ms) if stats.topics else None
        q, cursor = request.arg("q").strip(), request.arg("cursor")
        values: dict[str, Any] = {"letters": [], "tasks": [], "cursor": ""}
        if show == "dead":
            values["letters"], values["cursor"] = views.dead_page(
                client, topic, views.DeadFilter(), cursor
            )
        else:
            page = views.task_page(client, topic, TOPIC_TABS[show], cursor, q)
            values["tasks"], values["cursor"] = page.tasks, page.next_cursor
        return self.page(
            "topic.html", request, topic=topic, figures=figures, show=show, q=q, **values
        )

    def topic_action(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2 or parts[1] not in ("requeue", "purge", "cancel"):
            return self.page("error.html", request, 404, message="no such action")
        topic, action = parts
        ids = [i for i in request.form.get("ids", "").split(",") if i]
        client = self.client(request.token)
        if action == "cancel":
            for task_id in ids:
                client.cancel(task_id, topic)
            self._done(request, f"cancelled {len(ids)} task(s) of {topic}")
            return redirect(f"/topic/{quote(topic, safe='')}")
        call = client.requeue_dead_letters if action == "requeue" else client.purge_dead_letters
        count = call(topic, ids)
        self._done(request, f"{action}d {count} dead letter(s) of {topic}")
        return redirect(f"/topic/{quote(topic, safe='')}?show=dead")

    def task(self, request: Request, parts: list[str]) -> Response:
        task_id = parts[0] if len(parts) == 1 else request.arg("id").strip()
        if not task_id:
            return self.page("error.html", request, 404, message="which task?")
        client = self.client(request.token)
        found = client.get_task(task_id, request.arg("topic"))
        history = client.task_history(task_id, found.topic)
        return self.page("task.html", request, task=found, events=history.events)

    def task_action(self, request: Request, parts: list[str]) -> Response:
        """Cancel a pending task; requeue a dead one, with its payload as edited on the page
        when the form says so."""
        if len(parts) != 2 or parts[1] not in ("cancel", "requeue"):
            return self.page("error.html", request, 404, message="no such action")
        task_id, topic = parts[0], request.form.get("topic", "")
        client = self.client(request.token)
        if parts[1] == "cancel":
            client.cancel(task_id, topic)
            self._done(request, f"cancelled task {task_id}")
        else:
            edited = request.form.get("edit") == "1"
            payload = request.form.get("payload", "").replace("\r\n", "\n") if edited else None
            count = client.requeue_dead_letters(topic, [task_id], payload)
            how = " with the edited payload" if edited else ""
            self._done(request, f"requeued task {task_id}{how}" if count else "nothing requeued")
        return redirect(f"/task/{quote(task_id, safe='')}?topic={quote(topic, safe='')}")

    def dead(self, request: Request, _: list[str]) -> Response:
        topic, error, within = request.arg("topic"), request.arg("error"), request.arg("within")
        wanted = _dead_filter(request.query)
        client = self.client(request.token)
        topics = [r for r in self.stats.rows(client, request.token) if r.dead]
        letters: list[DeadLetter] = []
        cursor = ""
        if topic:
            letters, cursor = views.dead_page(client, topic, wanted, request.arg("cursor"))
        return self.page(
            "dead.html",
            request,
            topics=topics,
            topic=topic,
            error=error,
            within=within,
            since=request.arg("from"),
            until=request.arg("until"),
            tz=request.arg("tz"),
            choices=list(views.WITHIN),
            letters=letters,
            cursor=cursor,
        )

    def dead_action(self, request: Request, parts: list[str]) -> Response:
        action = parts[0] if parts else ""
        form = request.form
        topic, error, within = form.get("topic", ""), form.get("error", ""), form.get("within", "")
        if action not in ("requeue", "purge") or not topic or within not in views.WITHIN:
            return self.page("error.html", request, 400, message="requeue or purge, and a topic")
        wanted = _dead_filter(form)
        count = views.act_on_dead(self.client(request.token), topic, wanted, action)
        matching = f" matching {error!r}" if error else ""
        matching += f" dead within {within}" if within else ""
        matching += " in the time range" if wanted.from_ms or wanted.until_ms else ""
        self._done(request, f"{action}d {count} dead letter(s) of {topic}{matching}")
        return redirect(f"/dead?topic={quote(topic, safe='')}")

    def schedules(self, request: Request, _: list[str]) -> Response:
        client = self.client(request.token)
        found = client.list_schedules(request.arg("topic"))
        return self.page("schedules.html", request, schedules=found)

    def schedule_action(self, request: Request, parts: list[str]) -> Response:
        if len(parts) != 2 or parts[1] not in ("pause", "resume", "fire"):
            return self.page("error.html", request, 404, message="pause, resume or fire")
        client = self.client(request.token)
        if parts[1] == "fire":
            fired = client.fire_schedule(parts[0])
            self._done(request, f"schedule {parts[0]} fired: task {fired.task_id}")
            return redirect("/schedules")
        call = client.pause_schedule if parts[1] == "pause" else client.resume_schedule
        call(parts[0])
        self._done(request, f"schedule {parts[0]} {parts[1]}d")
        return redirect("/schedules")

    def workers(self, request: Request, _: list[str]) -> Response:
        found = views.workers(self.client(request.token))
        return self.page("workers.html", request, workers=found)

    def _done(self, request: Request, message: str) -> None:
        self.stats.forget()
        if request.session:
            request.session.flash = message

    # -- signing in ----------------------------------------------------------------------------

    def login_page(self, request: Request, _: list[str]) -> Response:
        return self.page("login.html", request, message="")

    def login(self, request: Request, _: list[str]) -> Response:
        token = request.form.get("token", "").strip()
        try:
            self.client(token).stats(page_size=1)
        except PermissionDenied:
            pass  # a known token without GetStats (a producer, a worker) may still sign in
        except (Unauthenticated, RpcFailed, AtpError) as exc:
            self._clients.pop(token, None)
            return self.page("login.html", request, 401, message=f"not signed in: {exc}")
        assert request.session is not None
        self.sessions.drop(request.session.sid)  # a new id after signing in (no fixation)
        request.session = self.sessions.new(token)
        response = redirect("/")
        response.headers.append(("Set-Cookie", cookie_header(request.session)))
        return response

    def logout(self, request: Request, _: list[str]) -> Response:
        if request.session:
            self.sessions.drop(request.session.sid)
        response = redirect("/login")
        response.headers.append(("Set-Cookie", cookie_header(None)))
        return response


TOPIC_TABS = {"pending": TaskState.PENDING, "running": TaskState.RUNNING, "dead": TaskState.DEAD}


def _dead_filter(values: dict[str, str]) -> views.DeadFilter:
    """The Dead letters page's filter from its query or form: error text, a `within` preset
    and a from/until range in the browser's zone (`tz`: its offset)."""
    within = values.get("within", "")
    if within not in views.WITHIN:
        raise InvalidArgument(f"within: one of {', '.join(repr(w) for w in views.WITHIN)}")
    tz = values.get("tz", "")
    return views.DeadFilter(
        values.get("error", ""),
        within,
        views.local_ms(values.get("from", ""), tz),
        views.local_ms(values.get("until", ""), tz),
    )


def _loopback_host(host: str) -> bool:
    """The Host header names loopback: localhost or a loopback address, any port."""
    name = urlsplit(f"//{host}").hostname or ""
    return name == "localhost" or auth.is_loopback(f"[{name}]:0")


def _template(name: str) -> str | None:
    """Templates read as package data (so the one-file binary has them too)."""
    found = importlib.resources.files("appliance.console").joinpath("templates", name)
    return found.read_text(encoding="utf-8") if found.is_file() else None


def _cookie(header: str) -> str | None:
    try:
        jar = SimpleCookie(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel else None
