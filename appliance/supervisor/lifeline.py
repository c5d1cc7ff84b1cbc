"""Children die with their supervisor: a parent-death signal set before exec, and a parent-pid
watch as a backup in Python children (docs/adr/0005-supervisor-death.md).

`bind_to_parent` runs in the forked child before exec (Linux prctl(PR_SET_PDEATHSIG), which
survives execve and fires when the supervisor's main thread dies, even by SIGKILL).
`watch_parent` runs in an atp child: when a death signal is set, it was started by a
supervisor, so a change of parent pid means the supervisor is gone: the child kills itself.
Stdlib only (ctypes): must not import redis or grpc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

PR_SET_PDEATHSIG = 1
PR_GET_PDEATHSIG = 2
WATCH_EVERY_S = 0.2
EXIT_PARENT_GONE = 1


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
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


def watch_parent() -> threading.Thread | None:
    """In a supervised child (a death signal is set): a daemon thread that SIGKILLs this
    process once its parent pid changes (the supervisor died and the signal was missed)."""
    if death_signal() == 0:
        return None
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_EVERY_S)
        os.kill(os.getpid(), signal.SIGKILL)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread
