"""The supervisor's /console/ proxy (console_proxy.py) to a console on console_addr (TCP), and
its answer when no console runs. The unix-socket default is what the other console tests use."""

from __future__ import annotations

from pathlib import Path

from appliance.config import Settings
from appliance.console.server import ConsoleServer
from appliance.supervisor.console_proxy import ConsoleProxy
from tests.console.appliance import Appliance
from tests.redis_server import free_port


def test_the_proxy_follows_console_addr(open_appliance: Appliance, tmp_path: Path) -> None:
    settings = Settings(
        grpc_addr=open_appliance.grpc_addr,
        console_addr=f"127.0.0.1:{free_port()}",
        data_dir=str(tmp_path),
    )
    server = ConsoleServer(settings).start()
    try:
        code, headers, body = ConsoleProxy(settings).forward(
            "GET", "/console/?sort=dead&dir=desc", [("Host", "127.0.0.1")], b"", "127.0.0.1"
        )
    finally:
        server.close()
    assert code == 200, body[-500:]
    assert b'<tr data-topic="billing">' in body
    names = {k.lower() for k, _ in headers}
    assert "set-cookie" in names and "server" not in names  # the supervisor sends its own
    assert not (tmp_path / "console.sock").exists()


def test_no_console_is_a_502_that_says_so(tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path))
    code, _, body = ConsoleProxy(settings).forward("GET", "/console/", [], b"", "127.0.0.1")
    assert code == 502 and b"the console is not running" in body


def test_x_forwarded_for_counts_only_from_a_local_peer() -> None:
    from appliance.console.server import _peer

    assert _peer(("10.0.0.5", 40000), "127.0.0.1") == "10.0.0.5"  # a remote browser's claim
    assert _peer(("127.0.0.1", 40000), "192.0.2.7") == "192.0.2.7"  # the supervisor's proxy
    assert _peer("", "192.0.2.7") == "192.0.2.7"  # the proxy over the unix socket
    assert _peer("", "") == "127.0.0.1"
