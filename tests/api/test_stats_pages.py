"""GetStats pages through every known topic in name order (page_size, page_token)."""

from __future__ import annotations

import grpc
import pytest

from appliance.proto import queue_pb2 as pb


async def test_every_topic_once_a_page_at_a_time(stub) -> None:
    names = [f"topic-{i:02d}" for i in range(25)]
    await stub.EnqueueBatch(
        pb.EnqueueBatchRequest(requests=[pb.EnqueueRequest(topic=t, payload="p") for t in names])
    )
    seen, token, pages = [], "", 0
    while True:
        reply = await stub.GetStats(pb.GetStatsRequest(page_size=10, page_token=token))
        assert len(reply.topics) <= 10 and reply.now_ms > 0
        seen += [s.topic for s in reply.topics]
        assert all(s.pending == 1 for s in reply.topics)
        pages += 1
        token = reply.next_page_token
        if not token:
            break
    assert seen == names and pages == 3
    everything = await stub.GetStats(pb.GetStatsRequest())  # 0: up to 1000 a page
    assert [s.topic for s in everything.topics] == names and not everything.next_page_token


@pytest.mark.parametrize(
    "request_",
    [
        pb.GetStatsRequest(page_size=-1),
        pb.GetStatsRequest(page_size=1001),
        pb.GetStatsRequest(page_token="not a topic"),
        pb.GetStatsRequest(topics=[f"t{i}" for i in range(1001)]),
    ],
    ids=["negative", "over-the-cap", "bad-token", "too-many-topics"],
)
async def test_bad_pages_are_invalid_argument(stub, request_: pb.GetStatsRequest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetStats(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
