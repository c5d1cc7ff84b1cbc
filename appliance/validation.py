"""Input checks shared by the gRPC layer and the SDK: each raises InvalidArgument or TooLarge
with a message that names the field, before anything touches Redis. Stdlib only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from appliance.errors import InvalidArgument, TooLarge

TOPIC_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
ID_RE = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
SERVER_ID_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}~[A-Za-z0-9_-]{22}")  # keys.new_task_id
MAX_DELAY_MS = 10 * 365 * 86_400_000  # ten years
MAX_RETRIES_LIMIT = 1000


def matching(value: str, field: str, pattern: re.Pattern[str], rule: str) -> str:
    """`value` when it is not empty and `pattern` matches all of it; else InvalidArgument
    naming the field, the value (cut short) and the `rule` it breaks."""
    if not value:
        raise InvalidArgument(f"{field} is empty")
    if not pattern.fullmatch(value):
        raise InvalidArgument(f"{field} {value[:140]!r} must be {rule}")
    return value


def topic(value: str, field: str = "topic") -> str:
    return matching(value, field, TOPIC_RE, "1-128 characters of [A-Za-z0-9._:-]")


def task_id(value: str, field: str = "id") -> str:
    """A client-given id, or one the server made (`<topic>~<22 base64url>`)."""
    if not value:
        raise InvalidArgument(f"{field} is empty")
    if not ID_RE.fullmatch(value) and not SERVER_ID_RE.fullmatch(value):
        raise InvalidArgument(
            f"{field} {value[:140]!r} must be 1-128 characters of [A-Za-z0-9._:@/+=-]"
        )
    return value


def lease_token(value: str) -> str:
    if not value:
        raise InvalidArgument("lease_token is empty")
    if len(value) > 200:
        raise InvalidArgument("lease_token is too long to be one atp handed out")
    return value


def payload(value: str, limit: int) -> str:
    size = len(value.encode())
    if size > limit:
        raise TooLarge(f"payload is {size} bytes, over the limit of {limit}")
    return value


def non_negative(value: int, field: str, upper: int | None = None) -> int:
    if value < 0:
        raise InvalidArgument(f"{field} must be >= 0, got {value}")
    if upper is not None and value > upper:
        raise InvalidArgument(f"{field} must be <= {upper}, got {value}")
    return value


def execute_at_ms(value: int, now_ms: int | None = None) -> int:
    """An absolute due time: 0 (unset) or at most MAX_DELAY_MS from now, like the delays (a
    far-future time would not survive the ZSET's double, nor a datetime)."""
    non_negative(value, "execute_at_ms")
    upper = (int(time.time() * 1000) if now_ms is None else now_ms) + MAX_DELAY_MS
    if value > upper:
        raise InvalidArgument(
            f"execute_at_ms {value} is more than ten years ahead (at most {upper} now)"
        )
    return value


def batch_length(count: int, cap: int, what: str) -> int:
    """A batch call's length (EnqueueBatch's requests, AckBatch's acks): at most `cap`."""
    if count > cap:
        raise InvalidArgument(f"{count} {what} is over the batch cap of {cap}")
    return count


def lease_ms(value: int, default: int, cap: int, field: str = "visibility_timeout_ms") -> int:
    """A lease length (ms): 0 (unset) means `default`."""
    non_negative(value, field, cap)
    return value or default


def wait_ms(value: int, cap: int) -> int:
    """Long-poll wait; negative is refused, anything over the cap is cut to the cap."""
    if value < 0:
        raise InvalidArgument(f"wait_ms must be >= 0, got {value}")
    return min(value, cap)


STATS_PAGE_MAX = 1000


def stats_topics(values: Iterable[str]) -> list[str]:
    """GetStats' named topics: valid, at most STATS_PAGE_MAX."""
    topics = [topic(t, "topics[]") for t in values]
    if len(topics) > STATS_PAGE_MAX:
        raise InvalidArgument(f"at most {STATS_PAGE_MAX} topics per GetStats")
    return topics


def stats_page(size: int, token: str) -> tuple[int, str]:
    """GetStats' page size (0: the most) and the topic the page starts after."""
    non_negative(size, "page_size", STATS_PAGE_MAX)
    if token:
        topic(token, "page_token")
    return size or STATS_PAGE_MAX, token


def dead_letter_limit(value: int) -> int:
    non_negative(value, "limit", 1000)
    return value or 100


def dead_letter_cursor(cursor: str) -> str:
    """'' or '<dead at ms>:<id>', as ListDeadLetters hands it out."""
    died, sep, rest = cursor.partition(":")
    if cursor and (not sep or not died.isdigit() or not _is_task_id(rest)):
        raise InvalidArgument(f"cursor {cursor[:80]!r} is not one this server returned")
    return cursor


def _is_task_id(value: str) -> bool:
    return bool(ID_RE.fullmatch(value) or SERVER_ID_RE.fullmatch(value))


def task_ids(values: Iterable[str]) -> list[str]:
    return [task_id(v, "ids[]") for v in values]


def batch_size(value: int, cap: int) -> int:
    """0 (unset, as the seed's clients send it) means 1."""
    if value < 0:
        raise InvalidArgument(f"batch_size must be >= 0, got {value}")
    if value > cap:
        raise InvalidArgument(f"batch_size {value} is over the cap of {cap}")
    return value or 1


def max_retries(value: int) -> int:
    return non_negative(value, "max_retries", MAX_RETRIES_LIMIT)


def error_text(value: str, limit: int = 4096) -> str:
    """Failure messages are kept, cut to `limit` bytes."""
    raw = value.encode()
    return value if len(raw) <= limit else raw[:limit].decode(errors="ignore")
