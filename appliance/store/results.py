"""Every Lua script's refusal codes by name, and the one mapping from a refusal to its domain
error (BullMQ's ErrorCode table).

A script refuses with a small negative integer whose meaning is the script's own (-2 is a stale
lease to ack, the lost leadership to schedule_fire, an unknown schedule to schedule_put): read a
code only through `refusal(script, code)`. Each script's contract header lists the same codes.
The loader (scripts.py) fails at start when a lua/*.lua file has no row here or a row no file.
Stdlib and appliance.errors only.
"""

from __future__ import annotations

import enum
from typing import Any

from appliance.errors import AlreadyExists, AtpError, NotFound, StaleLease, TooLarge, WrongState


class Refusal(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"  # no such task / schedule
    STALE_LEASE = "STALE_LEASE"  # the lease token is not the task's current one
    NOT_PENDING = "NOT_PENDING"  # the task is in a state that does not allow the move
    EXISTS = "EXISTS"  # the id is taken
    CONFIG_DECLARED = "CONFIG_DECLARED"  # a schedule from the config file: change it there
    OVER_MAX_TOPICS = "OVER_MAX_TOPICS"  # a new topic over the appliance's max_topics
    OVER_TOKEN_TOPICS = "OVER_TOKEN_TOPICS"  # a new topic over the token's max_topics_per_token
    LEASE_GONE = "LEASE_GONE"  # the scheduler lease expired
    NOT_LEADER = "NOT_LEADER"  # another fencing token holds the scheduler lease
    PAUSED = "PAUSED"  # the schedule is paused
    CHANGED = "CHANGED"  # the schedule changed since the fire was planned
    STEP_MOVED = "STEP_MOVED"  # a workflow step is not in the state the move starts from
    RUN_FINISHED = "RUN_FINISHED"  # the workflow run has finished (or was canceled)
    RUN_MOVED = "RUN_MOVED"  # a workflow run's steps moved since the caller saw them


R = Refusal
_LEASE = {-1: R.NOT_FOUND, -2: R.STALE_LEASE}
_EDIT = {-1: R.NOT_FOUND, -3: R.CONFIG_DECLARED}

CODES: dict[str, dict[int, Refusal]] = {
    # the task lifecycle (appliance/model.py TRANSITIONS)
    "enqueue": {},
    "claim": {},
    "ack": _LEASE,
    "nack": _LEASE,
    "release": _LEASE,
    "extend": _LEASE,
    "cancel": {-1: R.NOT_FOUND, -3: R.NOT_PENDING},
    "recover_expired": {},
    "release_lost": {},
    "requeue_dead": {},
    "purge_dead": {},
    # topics and ids
    "id_index": {},
    "topic_add": {-1: R.OVER_MAX_TOPICS, -2: R.OVER_TOKEN_TOPICS},
    "topic_forget": {},
    # the scheduler
    "leader_acquire": {},
    "leader_renew": {-1: R.LEASE_GONE, -2: R.NOT_LEADER},
    "leader_release": {},
    "schedule_put": {-1: R.EXISTS, -2: R.NOT_FOUND, -3: R.CONFIG_DECLARED},
    "schedule_delete": _EDIT,
    "schedule_pause": {-1: R.NOT_FOUND},
    "schedule_resume": {-1: R.NOT_FOUND},
    "schedule_fire": {-1: R.NOT_FOUND, -2: R.NOT_LEADER, -3: R.PAUSED, -4: R.CHANGED},
    "schedule_fire_now": {-1: R.NOT_FOUND},
    # workflows (appliance/workflows/model.py RUN_TRANSITIONS, STEP_TRANSITIONS)
    "workflow_put": {},
    "workflow_delete": {-1: R.NOT_FOUND},
    "run_start": {},
    "step_schedule": {-1: R.NOT_FOUND, -3: R.STEP_MOVED, -4: R.RUN_FINISHED, -5: R.RUN_MOVED},
    "step_running": {-1: R.NOT_FOUND, -3: R.STEP_MOVED},
    "step_finish": {-1: R.NOT_FOUND, -3: R.STEP_MOVED},
    # step_finish's and step_schedule's moves and enqueue's write in one script (single Redis):
    # its answer holds their answers, read with their rows
    "step_hand_off": {},
    "run_cancel": {-1: R.NOT_FOUND, -3: R.RUN_FINISHED},
    "run_signal": {-1: R.NOT_FOUND, -4: R.RUN_FINISHED},
}
"""Per script: its refusal codes. A script with none still has its row (the loader checks)."""

ERRORS: dict[Refusal, type[AtpError]] = {
    R.NOT_FOUND: NotFound,
    R.STALE_LEASE: StaleLease,
    R.NOT_PENDING: WrongState,
    R.EXISTS: AlreadyExists,
    R.CONFIG_DECLARED: WrongState,
    R.OVER_MAX_TOPICS: TooLarge,
    R.OVER_TOKEN_TOPICS: TooLarge,
    R.RUN_FINISHED: WrongState,
}
"""The refusals a caller gets as an error. The others (LEASE_GONE, NOT_LEADER, PAUSED,
CHANGED) are news for the scheduler, which steps down or reads again; STEP_MOVED and RUN_MOVED
are news for a workflow advancer (another one moved the step or the run first)."""


def refusal(script: str, reply: Any) -> Refusal | None:
    """The refusal a script's code (an integer reply, or a reply's first element) names; None
    for any other reply (a result: a count, a deadline, a list)."""
    code = reply[0] if isinstance(reply, list) and reply else reply
    if not isinstance(code, int) or code >= 0:
        return None
    try:
        return CODES[script][code]
    except KeyError:
        raise AssertionError(f"{script}.lua answered {code}, a code it does not list") from None


def error(why: Refusal, message: str) -> AtpError:
    """The domain error of a refusal (ERRORS), with the caller's message."""
    return ERRORS[why](message)
