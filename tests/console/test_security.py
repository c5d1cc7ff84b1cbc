"""The console's security (issue 17): off loopback or with tokens configured it asks for a
token and keeps it in a server-side session (an HttpOnly, SameSite=Strict cookie holding only a
random id; never in a URL); every action needs the session's CSRF token; a viewer token reads
but cannot act. Against a real `atp --role=all`, through the supervisor's /console/ proxy."""

from __future__ import annotations

from appliance.auth import Principal
from appliance.errors import PermissionDenied
from appliance.supervisor.console_proxy import SOCKET_NAME, UnixConnection
from tests.console.appliance import SCHEDULE_ID, Appliance
from tests.console.conftest import ADMIN, PRODUCER, VIEWER
from tests.console.web import Web

PAGES = ("/", "/topic/billing", "/task/billing-due-0?topic=billing", "/dead", "/schedules")


def dead_count(appliance: Appliance, topic: str) -> int:
    with appliance.client(ADMIN) as client:
        return next(t.dead for t in client.stats([topic]).topics)


def test_with_tokens_every_page_and_action_asks_to_sign_in_first(
    token_appliance: Appliance,
) -> None:
    web = Web(token_appliance.base)
    for path in PAGES:
        code, headers, _ = web.get(path)
        assert (code, headers["Location"]) == (303, "/console/login"), path
    before = dead_count(token_appliance, "billing")
    code, headers, _ = web.post("/dead/requeue", {"csrf": web.csrf("/login"), "topic": "billing"})
    assert (code, headers["Location"]) == (303, "/console/login")
    assert dead_count(token_appliance, "billing") == before


def test_a_wrong_token_does_not_sign_in(token_appliance: Appliance) -> None:
    web = Web(token_appliance.base)
    code, _, body = web.sign_in("not-a-token")
    assert code == 401 and "unknown token" in body
    assert web.get("/")[0] == 303


def test_the_session_cookie_holds_only_an_id_and_the_token_never_travels_in_a_url(
    token_appliance: Appliance,
) -> None:
    web = Web(token_appliance.base)
    _, _, page = web.get("/login")
    assert 'method="post" action="/console/login"' in page and 'type="password"' in page
    code, headers, _ = web.sign_in(ADMIN)
    assert (code, headers["Location"]) == (303, "/console/")
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console" in cookie
    assert ADMIN not in cookie and ADMIN not in headers["Location"]
    code, _, body = web.get("/")
    assert code == 200 and ADMIN not in body
    assert 'data-topic="billing"' in body
    code, headers, _ = web.post("/logout", {"csrf": web.csrf()})
    assert (code, headers["Location"]) == (303, "/console/login")
    assert web.get("/")[0] == 303  # the session is gone on the server


def test_a_viewer_sees_the_figures_but_cannot_act(token_appliance: Appliance) -> None:
    web = Web(token_appliance.base)
    assert web.sign_in(VIEWER)[0] == 303
    for path in PAGES:
        code, _, body = web.get(path)
        assert code == 200, (path, body[-500:])
    before = dead_count(token_appliance, "emails")
    csrf = web.csrf()
    for path, form in [
        ("/dead/requeue", {"topic": "emails"}),
        ("/dead/purge", {"topic": "emails", "error": "smtp"}),
        ("/topic/emails/requeue", {}),
        (f"/schedules/{SCHEDULE_ID}/pause", {}),
        ("/task/billing-due-0/cancel", {"topic": "billing"}),
    ]:
        code, _, body = web.post(path, {"csrf": csrf, **form})
        assert code == 403, (path, code)
        assert "(viewer) may not call" in body, body[-500:]
    assert dead_count(token_appliance, "emails") == before
    with token_appliance.client(ADMIN) as client:
        assert not client.get_schedule(SCHEDULE_ID).paused
        assert client.get_task("billing-due-0", "billing").state.value == "PENDING"


def test_an_action_without_the_right_csrf_token_or_from_another_site_is_refused(
    token_appliance: Appliance,
) -> None:
    web = Web(token_appliance.base)
    assert web.sign_in(ADMIN)[0] == 303
    csrf = web.csrf()
    before = dead_count(token_appliance, "billing")
    ids = {"ids": "billing-timeout-0"}
    refused = [
        web.post("/topic/billing/requeue", ids),
        web.post("/topic/billing/requeue", {**ids, "csrf": "forged"}),
        web.post("/topic/billing/requeue", {**ids, "csrf": Web(web.base).csrf("/login")}),
        web.post("/topic/billing/requeue", {**ids, "csrf": csrf}, Origin="http://evil.example"),
    ]
    assert [code for code, _, _ in refused] == [403] * 4
    assert all("refused" in body for _, _, body in refused)
    assert dead_count(token_appliance, "billing") == before
    code, headers, _ = web.post("/topic/billing/requeue", {**ids, "csrf": csrf})
    assert (code, headers["Location"]) == (303, "/console/topic/billing?show=dead")
    assert dead_count(token_appliance, "billing") == before - 1
    assert "requeued 1 dead letter(s) of billing" in web.get("/topic/billing")[2]


def test_the_viewer_role_reads_and_cannot_act_through_the_api(token_appliance: Appliance) -> None:
    with token_appliance.client(VIEWER) as viewer:
        assert {t.topic for t in viewer.stats().topics} >= {"billing", "emails"}
        assert viewer.list_dead_letters("emails").letters
        assert viewer.get_task("emails-due-0", "emails").id == "emails-due-0"
        assert [s.id for s in viewer.list_schedules()] == [SCHEDULE_ID]
        assert viewer.get_schedule(SCHEDULE_ID).topic == "reports"
        viewer.scheduler_status()
        for act in (
            lambda: viewer.requeue_dead_letters("emails"),
            lambda: viewer.purge_dead_letters("emails"),
            lambda: viewer.pause_schedule(SCHEDULE_ID),
            lambda: viewer.enqueue("emails", "x"),
            lambda: viewer.cancel("emails-due-0", "emails"),
            lambda: viewer.retrieve("emails"),
        ):
            try:
                act()
            except PermissionDenied as exc:
                assert "(viewer) may not call" in str(exc)
            else:
                raise AssertionError("a viewer token acted")


def test_a_producer_token_signs_in_and_is_told_what_it_may_not_read(
    token_appliance: Appliance,
) -> None:
    web = Web(token_appliance.base)
    assert web.sign_in(PRODUCER)[0] == 303
    code, _, body = web.get("/")
    assert code == 403 and "(producer) may not call GetStats" in body


def test_off_loopback_the_open_console_asks_for_a_token(open_appliance: Appliance) -> None:
    web = Web(open_appliance.base)
    assert web.get("/")[0] == 200  # on loopback, open as the API is
    # the proxy replaces what the browser claims with the real peer (loopback here)
    assert web.call("/", headers={"X-Forwarded-For": "192.0.2.7"})[0] == 200
    # what the proxy says a browser off loopback gets: the sign-in page
    conn = UnixConnection(str(open_appliance.data_dir / SOCKET_NAME))
    conn.request("GET", "/console/", headers={"X-Forwarded-For": "192.0.2.7"})
    reply = conn.getresponse()
    assert (reply.status, reply.getheader("Location")) == (303, "/console/login")
    conn.close()


def test_an_open_console_still_needs_the_csrf_token(open_appliance: Appliance) -> None:
    web = Web(open_appliance.base)
    before = dead_count(open_appliance, "emails")
    code, _, body = web.post("/dead/purge", {"topic": "emails"})
    assert code == 403 and "CSRF" in body
    assert dead_count(open_appliance, "emails") == before


def test_a_bad_filter_changes_nothing(open_appliance: Appliance) -> None:
    web = Web(open_appliance.base)
    before = dead_count(open_appliance, "emails")
    form = {"csrf": web.csrf("/dead?topic=emails"), "topic": "emails", "within": "forever"}
    code, _, body = web.post("/dead/purge", form)
    assert code == 400 and "requeue or purge" in body
    assert dead_count(open_appliance, "emails") == before
    code, _, body = web.get("/dead?topic=emails&within=1h&error=SMTP")
    assert code == 200 and body.count('<tr data-id="emails-smtp-') == before


def test_the_viewer_role_table() -> None:
    viewer = Principal("looker", "viewer")
    reads = ["GetStats", "GetTask", "ListDeadLetters", "ListSchedules", "GetRun", "ListRuns"]
    reads += ["GetTaskHistory", "ListTasks", "ListWorkers"]
    acts = ["Enqueue", "Delete", "RequeueDeadLetters", "PurgeDeadLetters", "PauseSchedule"]
    acts += ["RedriveDeadLetters", "FireSchedule", "ResumeSchedule"]
    acts += ["Retrieve", "Ack", "Work", "PutWorkflow", "StartRun", "CancelRun", "SignalRun"]
    assert all(viewer.may_call(m) for m in reads)
    assert not any(viewer.may_call(m) for m in acts)


def test_the_open_console_answers_only_loopback_host_names(open_appliance: Appliance) -> None:
    """DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 would read the
    open console (and its CSRF tokens) as same-origin; its Host header gives it away."""
    web = Web(open_appliance.base)
    port = open_appliance.http_addr.rpartition(":")[2]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        assert web.call("/", headers={"Host": host})[0] == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"10.1.2.3:{port}"):
        code, _, body = web.call("/", headers={"Host": host})
        assert code == 403 and "unexpected Host" in body, host
