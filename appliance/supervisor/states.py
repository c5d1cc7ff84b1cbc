"""The lifecycle of one supervised child: states, allowed transitions, named groups, change_state.

Written once, after Supervisor's process states; every move goes through `change_state`.
Stdlib only: imports nothing from appliance, redis or grpc.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class ProcessState(enum.StrEnum):
    STOPPED = "STOPPED"  # not running and not wanted up (never started, or stopped on request)
    STARTING = "STARTING"  # spawned; not yet up for start_secs (or not yet answering its probe)
    RUNNING = "RUNNING"  # up for start_secs (and answering its probe)
    BACKOFF = "BACKOFF"  # exited on its own; waiting out the restart delay
    STOPPING = "STOPPING"  # asked to stop (SIGTERM, maybe SIGKILL after the drain deadline)
    EXITED = "EXITED"  # just exited on its own; decided at once: BACKOFF or FATAL
    FATAL = "FATAL"  # gave up: a reserved exit code or too many fast failures in a row


S = ProcessState

TRANSITIONS: dict[ProcessState, frozenset[ProcessState]] = {
    # spawned (the first start, or a start held back until Redis answered)
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset(
        {
            S.RUNNING,  # stayed up start_secs and its readiness probe passed
            S.EXITED,  # exited (or could not be spawned) before it counted as started
            S.STOPPING,  # stop requested while starting: SIGTERM sent
        }
    ),
    S.RUNNING: frozenset(
        {
            S.EXITED,  # exited on its own (crash, or an unexpected clean exit)
            S.STOPPING,  # stop requested: SIGTERM sent
        }
    ),
    S.EXITED: frozenset(
        {
            S.BACKOFF,  # a restart is scheduled after the backoff delay
            S.FATAL,  # reserved exit code (78, bad config) or a crash loop: never restarted
        }
    ),
    S.BACKOFF: frozenset(
        {
            S.STARTING,  # the delay passed: spawned again
            S.STOPPED,  # stop requested while waiting: nothing to signal
        }
    ),
    # reaped after SIGTERM (or SIGKILL at the drain deadline)
    S.STOPPING: frozenset({S.STOPPED}),
    # terminal: the arbiter stops everything and exits non-zero
    S.FATAL: frozenset(),
}

LIVE_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPING})  # a pid exists and may be signalled
WANTED_UP_STATES = frozenset({S.STARTING, S.RUNNING, S.BACKOFF})  # supervised to be up
HALTED_STATES = frozenset({S.STOPPED, S.FATAL})  # nothing happens to it without a new request
SIGNALLABLE_STATES = frozenset({S.STARTING, S.RUNNING})  # a stop request sends SIGTERM


class InvalidTransition(RuntimeError):
    """A move not in TRANSITIONS: a supervisor bug, never a child's fault."""


class Stateful(Protocol):
    name: str
    state: ProcessState


def change_state(target: Stateful, new: ProcessState, why: str = "") -> None:
    """Move `target` to `new` if TRANSITIONS allows it; the one place a state changes."""
    old = target.state
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"{target.name}: {old.value} -> {new.value} is not allowed")
    target.state = new
    log.debug("%s: %s -> %s%s", target.name, old.value, new.value, f" ({why})" if why else "")
