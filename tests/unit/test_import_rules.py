"""Import rules (docs/ARCHITECTURE.md): only store imports redis; only api, client and proto
import grpc; the supervisor imports neither; stdlib-only foundations import nothing heavy."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
FOUNDATIONS = {
    "model.py",
    "errors.py",
    "keys.py",
    "validation.py",
    "logs.py",
    "times.py",
    "waits.py",
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(
                node.module.split(".")[0]
                if not node.module.startswith("appliance")
                else node.module
            )
    return names


GENERATED = ("queue_pb2.py", "queue_pb2_grpc.py")  # appliance/proto/, by `just proto`


def modules() -> list[Path]:
    """Every module of atp's own (the generated ones left out)."""
    return [p for p in PACKAGE.rglob("*.py") if p.name not in GENERATED]


def test_only_the_store_imports_redis() -> None:
    offenders = [
        p
        for p in modules()
        if "redis" in imports_of(p) and "store" not in p.relative_to(PACKAGE).parts
    ]
    assert offenders == []


def test_only_api_and_client_import_grpc() -> None:
    allowed = {"api", "client", "proto"}  # proto: the generated stubs and the status table
    offenders = [
        p
        for p in modules()
        if {"grpc", "grpc_health", "grpc_reflection"} & imports_of(p)
        and not allowed & set(p.relative_to(PACKAGE).parts)
    ]
    assert offenders == []


def test_foundations_are_stdlib_only() -> None:
    for name in FOUNDATIONS:
        heavy = {i for i in imports_of(PACKAGE / name) if i in {"grpc", "redis", "yaml", "google"}}
        assert not heavy, (name, heavy)
        assert not {
            i
            for i in imports_of(PACKAGE / name)
            if i.startswith("appliance.")
            and i not in {"appliance.errors", "appliance.model", "appliance.times"}
        }, name


def test_keys_are_built_in_keys_py_only() -> None:
    """The key layout is written once (appliance/keys.py): no other module spells a key."""
    spelled = ("prefix}:", "{{{", ":pending", ":running", ":dlq", "/scheduler}")
    offenders = [
        (p.name, s) for p in modules() if p.name != "keys.py" for s in spelled if s in p.read_text()
    ]
    assert offenders == []


def test_the_servicer_only_converts() -> None:
    """The long poll's timing engine is store/longpoll.py's: the servicer sleeps on nothing."""
    text = (PACKAGE / "api" / "servicer.py").read_text()
    assert "sleep_until" not in text and "loop.time()" not in text


def test_colliding_names_are_defined_once() -> None:
    """One meaning per name (issue 14 item 7): the process roles are config.ROLES, a token's
    auth.TOKEN_ROLES; EXIT_CONFIG is errors.py's; DeadLetter is the SDK's (the store's row is
    DeadTask); a loop's pass is run_once() ("tick" is a schedule's fire time)."""
    defined: dict[str, list[str]] = {}
    for path in modules():
        for node in ast.parse(path.read_text()).body:
            names = [node.name] if isinstance(node, ast.ClassDef | ast.FunctionDef) else []
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            for name in names:
                defined.setdefault(name, []).append(str(path.relative_to(PACKAGE)))
    assert defined["ROLES"] == ["config.py"]
    assert defined["TOKEN_ROLES"] == ["auth.py"]
    assert defined["EXIT_CONFIG"] == ["errors.py"]
    assert defined["DeadLetter"] == ["client/common.py"]
    assert not any("def tick(" in p.read_text() for p in modules())


def test_the_scheduler_imports_neither_api_nor_client() -> None:
    """`atp schedule` lives beside the other commands (schedule_commands.py) and speaks through
    the SDK's schedule calls; the scheduler itself needs neither the API nor the SDK."""
    for path in (PACKAGE / "scheduler").glob("*.py"):
        wrong = {i for i in imports_of(path) if i.startswith(("appliance.api", "appliance.client"))}
        assert not wrong, (path.name, wrong)
    for path in modules():
        text = path.read_text()
        assert "client._channel" not in text and "client._metadata" not in text, path.name


def test_the_generated_stubs_are_imported_below_the_api_only() -> None:
    """The generated code (appliance/proto/queue_pb2*) is imported only by api/, client/ and
    the CLI's *_commands.py (`atp schedule`'s flags build a pb.Schedule); nothing under client/,
    scheduler/ or proto/ imports upward into api/; and no one imports the stubs from where they
    used to be."""
    stub_users = {"api", "client", "proto"}
    for path in modules():
        parts = set(path.relative_to(PACKAGE).parts)
        names = imports_of(path) | {
            f"{node.module}.{a.name}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.ImportFrom) and node.module
            for a in node.names
        }
        stubs = {n for n in names if n.startswith("appliance.proto.queue_pb2")}
        if stubs and not stub_users & parts:
            assert path.name.endswith("_commands.py"), (path.name, stubs)
        if parts & {"client", "scheduler", "proto"}:
            assert not {n for n in names if n.startswith("appliance.api")}, path.name
        assert not {n for n in names if "_proto" in n}, path.name


def test_no_module_uses_asyncio_wait_for() -> None:
    """The package waits with asyncio.timeout or waits.wait_event, never asyncio.wait_for (on
    Python 3.11 it can swallow a cancel: appliance/waits.py)."""
    offenders = [
        str(path)
        for path in modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "wait_for"
    ]
    assert offenders == []
