"""The built image driven through buildah, as `docker run` would drive it on a machine with
Docker: the image's own config (entrypoint, cmd, user, env, volume, healthcheck) read back with
`buildah inspect`, and its commands run with `buildah run --isolation chroot` (host network)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


@dataclass(frozen=True)
class ImageConfig:
    """The Docker config of a built image: what `docker run IMAGE` starts and checks."""

    entrypoint: list[str]
    cmd: list[str]
    user: str
    env: dict[str, str]
    volumes: list[str]
    healthcheck: list[str]  # Docker's form: ["CMD", argv...] or ["CMD-SHELL", "command"]

    @classmethod
    def of(cls, image: str) -> ImageConfig:
        out = _buildah("inspect", "--type", "image", image)
        config: dict[str, Any] = json.loads(out)["Docker"]["config"]
        return cls(
            entrypoint=list(config.get("Entrypoint") or []),
            cmd=list(config.get("Cmd") or []),
            user=str(config.get("User", "")),
            env=dict(e.split("=", 1) for e in config.get("Env") or []),
            volumes=sorted(config.get("Volumes") or {}),
            healthcheck=list((config.get("Healthcheck") or {}).get("Test") or []),
        )

    def healthcheck_argv(self) -> list[str]:
        kind, *rest = self.healthcheck
        return rest if kind == "CMD" else ["/bin/sh", "-c", *rest]


class Container:
    """A working container of an image: `docker run -e K=V -v HOST:PATH IMAGE`, by parts."""

    def __init__(self, image: str, env: dict[str, str], volumes: dict[Path, str]) -> None:
        self.name = _buildah("from", "--pull=never", image).strip()
        # like `docker run -e`: in the container's config, so every command run in it sees them
        _buildah("config", *(f"--env={k}={v}" for k, v in env.items()), self.name)
        # like `docker run -v`: every command run in the container sees the same mounts. A
        # mount on a path the image declares a VOLUME replaces that volume (as Docker does):
        # the declaration is dropped from this container's config, or buildah would also mount
        # an anonymous volume there, and which of the two a run sees varied from run to run.
        for path in volumes.values():
            _buildah("config", f"--volume={path}-", self.name)
        self.mounts = [f"--volume={host}:{path}" for host, path in volumes.items()]

    def argv(self, command: list[str]) -> list[str]:
        """`buildah run` of `command` as the image's user (its USER), with the mounts."""
        return ["buildah", "run", "--isolation", "chroot", *self.mounts, self.name, "--", *command]

    def start(self, command: list[str], log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.argv(command), stdout=log, stderr=subprocess.STDOUT)

    @staticmethod
    def processes(proc: subprocess.Popen[bytes]) -> list[int]:
        """Every process under a started command (the host's pids: no PID namespace)."""
        return _descendants(proc.pid)

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a started command and every process under it: `buildah run` killed alone
        leaves them running (there is no PID namespace to end with it)."""
        for pid in [*_descendants(proc.pid), proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(30)

    def run(self, command: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(command), capture_output=True, text=True, timeout=timeout)

    def remove(self) -> None:
        subprocess.run(["buildah", "rm", self.name], capture_output=True, timeout=60)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            ppid = int(stat.read_text().rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _buildah(*args: str) -> str:
    out = subprocess.run(["buildah", *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"buildah {' '.join(args)}: {out.stderr}"
    return out.stdout
