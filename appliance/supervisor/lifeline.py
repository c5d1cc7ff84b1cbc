"""Children die with their supervisor: a parent-death signal set before exec, and a parent-pid
watch as a backup in Python children (docs/adr/0005-supervisor-death.md).

`bind_to_parent` runs in the forked child before exec (Linux prctl(PR_SET_PDEATHSIG), which
survives execve and fires when the supervisor's main thread dies, even by SIGKILL).
`watch_parent` runs in an atp child: it watches the supervisor named in ATP_SUPERVISOR_PID (or,
with a death signal set, its parent) and kills the child once the supervisor is gone. Linux
/proc; elsewhere only a parent change is seen.
Stdlib only (ctypes): must not import redis or grpc.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
WATCH_EVERY_S = 0.2
EXIT_PARENT_GONE = 1
SUPERVISOR_PID = "ATP_SUPERVISOR_PID"  # in atp children's environment: whom to watch


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # this process's symbols: libc's among them
        prctl: Callable[..., int] = libc.prctl
    except (OSError, AttributeError):
        return None
    return prctl


_PRCTL = _prctl()  # looked up once in the parent, so the forked child only makes the call


def bind_to_parent(sig: int, parent_pid: int, reset: tuple[signal.Signals, ...] = ()) -> None:
    """In the child between fork and exec: receive `sig` when the parent dies (if the parent
    died before this ran, exit now), and restore the default action of `reset` signals."""
    for s in reset:
        signal.signal(s, signal.SIG_DFL)
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)


def death_signal() -> int:
    """The parent-death signal of this process (0: none, so nobody supervises it this way)."""
    if _PRCTL is None:
        return 0
    value = ctypes.c_int(0)
    _PRCTL(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
    return int(value.value)


def watch_parent(environ: Mapping[str, str] | None = None) -> threading.Thread | None:
    """In a supervised child: a daemon thread that SIGKILLs this process once the supervisor is
    gone (its death signal was missed). The supervisor is the pid in ATP_SUPERVISOR_PID (set for
    atp children: with the one-file binary a bootloader sits between them), else, when a death
    signal is set, the parent. None: not supervised."""
    environ = os.environ if environ is None else environ
    supervisor = int(environ.get(SUPERVISOR_PID, "0") or 0)
    if supervisor > 0:
        born = started_at(supervisor)
        if born is None:  # gone already
            os.kill(os.getpid(), signal.SIGKILL)

        def gone() -> bool:
            return started_at(supervisor) != born  # a reused pid has another start time

    elif death_signal() != 0:
        parent = os.getppid()

        def gone() -> bool:
            return os.getppid() != parent

    else:
        return None

    def watch() -> None:
        while not gone():
            time.sleep(WATCH_EVERY_S)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="supervisor-watch", daemon=True)
    thread.start()
    return thread


def started_at(pid: int) -> int | None:
    """The start time of a running process (clock ticks since boot); None if it is not running
    (a zombie has exited)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else int(fields[19])
