"""Domain exceptions: what the store and validation refuse, and why.

Stdlib only. The gRPC layer maps each class to one status code (appliance/api/status.py);
the SDK maps status codes back to these classes, so both ends speak the same errors.
"""

from __future__ import annotations


class AtpError(Exception):
    """Base of every error atp raises on purpose."""


class InvalidArgument(AtpError):
    """The request is malformed: nothing was changed."""


class TooLarge(AtpError):
    """A payload or batch is over its configured limit: nothing was changed."""


class NotFound(AtpError):
    """No task (or schedule) has this id."""


class AlreadyExists(AtpError):
    """Something with this id exists already (a schedule): nothing was changed."""


class WrongState(AtpError):
    """The task exists but is not in a state that allows this move."""


class StaleLease(AtpError):
    """The lease token is not the task's current one (expired and handed out again, or wrong)."""


class Unavailable(AtpError):
    """A dependency (Redis) could not be reached; the call may be retried."""


class Unauthenticated(AtpError):
    """No token, or one atp does not know."""


class PermissionDenied(AtpError):
    """The caller's token does not allow this method or topic."""


class RateLimited(AtpError):
    """Too many calls, or too many waiting long-polls: try again later."""


class ConfigError(AtpError):
    """The configuration is invalid; the message names the key."""


EXIT_CONFIG = 78
"""EX_CONFIG, the exit code of "bad config" (a ConfigError) from every atp process and
command: the supervisor halts instead of restarting a child that exits with it."""


class RetryTask(Exception):
    """Raised by a handler: fail this attempt and retry after `after_ms` (or the backoff)."""

    def __init__(self, message: str = "", after_ms: int = 0) -> None:
        super().__init__(message)
        self.after_ms = after_ms


class DeadLetterTask(Exception):
    """Raised by a handler: this task can never succeed; send it to the dead-letter queue."""
