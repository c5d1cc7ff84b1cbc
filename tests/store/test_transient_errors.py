"""The store's retry rule for transient Redis errors (store._retrying): a dropped connection,
CLUSTERDOWN while a failed master's replica is promoted, or TRYAGAIN during a slot move is
retried, then ends as Unavailable naming the operation; never a raw redis-py error (gRPC would
answer it UNKNOWN, which clients do not retry). The failover itself is exercised by
`python -m chaos cluster_failover`; here only the rule, with redis-py's own error types."""

from __future__ import annotations

import pytest
from redis.exceptions import ClusterDownError, ConnectionError, TryAgainError

from appliance.errors import Unavailable
from appliance.store.store import RETRY_DELAYS_S, _retrying


@pytest.mark.parametrize(
    "error",
    [ConnectionError("refused"), ClusterDownError("The cluster is down"), TryAgainError("x")],
)
async def test_a_transient_error_is_retried_then_unavailable(error: Exception) -> None:
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        raise error

    with pytest.raises(Unavailable, match=r"^enqueue: redis unavailable"):
        await _retrying(failing, "enqueue")
    assert calls == len(RETRY_DELAYS_S) + 1


async def test_a_failover_that_ends_within_the_retries_is_not_seen() -> None:
    answers: list[Exception | int] = [ClusterDownError("The cluster is down"), 7]

    async def recovering() -> int:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await _retrying(recovering, "ack") == 7
