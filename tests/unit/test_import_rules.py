"""Import rules (docs/ARCHITECTURE.md): only store imports redis; only api and client import grpc;
the supervisor imports neither; stdlib-only foundations import nothing heavy."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "appliance"
FOUNDATIONS = {"model.py", "errors.py", "keys.py", "validation.py", "logs.py", "times.py"}


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


def modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if "_proto" not in p.parts]


def test_only_the_store_imports_redis() -> None:
    offenders = [
        p
        for p in modules()
        if "redis" in imports_of(p) and "store" not in p.relative_to(PACKAGE).parts
    ]
    assert offenders == []


def test_only_api_and_client_import_grpc() -> None:
    allowed = {"api", "client"}
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
