"""The real toxiproxy server (a child process on loopback) driven only through the
toxiproxy-python package (0.1.1), wrapped thinly where it falls short.

What the package lacks, and what this wrapper does about it:
- its HTTP calls have no timeout and only 400/404/409 raise: a 500 (or a toxic the server did
  not take) passes silently, so `Link.add` reads the proxy's toxics back and raises if absent;
- no call to change a toxic's attributes (the API's POST /proxies/{p}/toxics/{t}): remove + add;
- `create()` without `listen` binds 127.0.0.1:0, and a disabled proxy re-enabled binds a *new*
  random port: every proxy here gets an explicit free port, so clients keep their address;
- `add_toxic` returns nothing (no Toxic object), and the API address is a class attribute
  (`update_api_consumer`), so one toxiproxy server per process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chaos.procs import ROOT, Child, can_connect, free_port, wait_for


def find_server() -> str:
    """The toxiproxy server binary: $CHAOS_TOXIPROXY, .tools/ (`just tools`), or the PATH."""
    for candidate in (
        os.environ.get("CHAOS_TOXIPROXY", ""),
        str(ROOT / ".tools" / "toxiproxy-server"),
        shutil.which("toxiproxy-server") or "",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(
        "toxiproxy-server not found: run `just tools` (builds it with Go into .tools/)"
        " or set CHAOS_TOXIPROXY to the binary"
    )


def _package() -> Any:
    try:
        import toxiproxy  # type: ignore[import-untyped]
    except ImportError as exc:
        raise RuntimeError(
            "the toxiproxy-python package is missing: pip install -e '.[chaos]'"
        ) from exc
    return toxiproxy


class Link:
    """One proxy: clients dial `port`, toxiproxy forwards to the upstream."""

    def __init__(self, proxy: Any, port: int) -> None:
        self.proxy = proxy
        self.name: str = proxy.name
        self.port = port

    def add(
        self, name: str, kind: str, stream: str = "downstream", toxicity: float = 1.0, **attrs: Any
    ) -> None:
        self.proxy.add_toxic(
            name=name, type=kind, stream=stream, toxicity=toxicity, attributes=attrs
        )
        if name not in self.proxy.toxics():
            raise RuntimeError(f"toxiproxy did not take toxic {name} ({kind}) on {self.name}")

    def remove(self, name: str) -> None:
        self.proxy.destroy_toxic(name)

    def clear(self) -> None:
        for name in list(self.proxy.toxics()):
            self.proxy.destroy_toxic(name)

    def both_ways(self, name: str, kind: str, **attrs: Any) -> None:
        """The same toxic on the upstream and the downstream (`<name>-up`, `<name>-down`)."""
        self.add(f"{name}-up", kind, "upstream", **attrs)
        self.add(f"{name}-down", kind, "downstream", **attrs)

    @contextlib.contextmanager
    def toxic(self, name: str, kind: str, **kwargs: Any) -> Iterator[None]:
        self.add(name, kind, **kwargs)
        try:
            yield
        finally:
            self.remove(name)

    def disable(self) -> None:
        """Drops every connection and stops listening (the package's `disable`)."""
        self.proxy.disable()

    def enable(self) -> None:
        self.proxy.enable()


class Toxiproxy:
    """The toxiproxy server process and its proxies."""

    def __init__(self, log_dir: Path) -> None:
        self.package = _package()
        self.api_port = free_port()
        self.child = Child(
            "toxiproxy",
            [find_server(), "-host", "127.0.0.1", "-port", str(self.api_port)],
            log_dir,
        )
        self.api = self.package.Toxiproxy()
        self.links: dict[str, Link] = {}

    def start(self) -> Toxiproxy:
        self.child.start()
        if not wait_for(lambda: can_connect(self.api_port), 10):
            raise RuntimeError(f"toxiproxy did not start: {self.child.output()}")
        self.api.update_api_consumer("127.0.0.1", self.api_port)
        return self

    def link(self, name: str, upstream_port: int) -> Link:
        """A new proxy `name` on a free loopback port in front of 127.0.0.1:upstream_port."""
        port = free_port()
        proxy = self.api.create(
            upstream=f"127.0.0.1:{upstream_port}", name=name, listen=f"127.0.0.1:{port}"
        )
        self.links[name] = Link(proxy, port)
        return self.links[name]

    def heal(self) -> None:
        """Every toxic removed, every proxy enabled (the API's /reset)."""
        self.api.reset()

    def stop(self) -> None:
        self.child.stop(5)
