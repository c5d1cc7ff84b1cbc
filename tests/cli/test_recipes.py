"""The justfile's recipes as a new user meets them: `just setup` installs only when
pyproject.toml changed and says nothing otherwise; on a fresh clone any recipe sets the venv up
itself, with no build-backend deprecation noise."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOISE = ("Deprecat", "deprecat", "BuildBackendWarning", "SetuptoolsWarning")


def just() -> str:
    found = shutil.which("just") or str(Path(sys.executable).with_name("just"))
    if not Path(found).exists():
        pytest.skip("the `just` command is not installed")
    return found


def run(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATP_", "VIRTUAL_ENV"))}
    return subprocess.run(
        [just(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_setup_installs_only_when_something_changed() -> None:
    first = run("setup", cwd=ROOT, timeout=600)  # installs if pyproject.toml moved on
    assert first.returncode == 0, first.stderr
    assert not [n for n in NOISE if n in first.stdout + first.stderr], first.stderr
    started = time.monotonic()
    again = run("setup", cwd=ROOT, timeout=120)
    assert again.returncode == 0, again.stderr
    assert (again.stdout, again.stderr) == ("", "")
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_a_fresh_clone_runs_a_recipe_without_setup(tmp_path: Path) -> None:
    clone = tmp_path / "atp"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    done = run("core-bench", "--help", cwd=clone, timeout=900)
    assert done.returncode == 0, done.stderr
    assert "usage: core_bench.py" in done.stdout
    assert not [n for n in NOISE if n in done.stdout + done.stderr], done.stderr
    assert (clone / ".venv/.installed").exists()
