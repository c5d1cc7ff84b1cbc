"""EnqueueStream on the wire (what a client in any language sees): one reply per message with
a result per call by seq, per-call errors as status codes, and the shutdown handshake."""

from __future__ import annotations

import grpc

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc


def calls(*pairs: tuple[int, str]) -> pb.EnqueueStreamRequest:
    return pb.EnqueueStreamRequest(
        calls=[
            pb.EnqueueCall(seq=seq, request=pb.EnqueueRequest(topic=topic, payload="x"))
            for seq, topic in pairs
        ]
    )


async def test_results_by_seq_with_their_own_status(server) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stream = pb_grpc.DelayQueueServiceStub(channel).EnqueueStream()
        await stream.write(calls((7, "t"), (3, "bad topic!"), (9, "t")))
        reply = await stream.read()
        assert [r.seq for r in reply.results] == [7, 3, 9]
        ok, bad, ok2 = reply.results
        assert ok.code == 0 and ok.id.startswith("t~") and not ok.duplicate
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "topic" in bad.message
        assert ok2.code == 0 and ok2.id != ok.id
        await stream.done_writing()
        assert await stream.read() is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK


async def test_shutdown_says_closing_then_refuses_until_the_client_closes(server) -> None:  # type: ignore[no-untyped-def]
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        stream = stub.EnqueueStream()
        await stream.write(calls((1, "t")))
        assert (await stream.read()).results[0].code == 0
        server.servicer.enqueue_stream.close()  # what QueueServer.stop() does first
        goodbye = await stream.read()
        assert goodbye.closing and not goodbye.results
        await stream.write(calls((2, "t")))  # sent before the client saw the goodbye
        (late,) = (await stream.read()).results
        assert late.seq == 2 and late.code == grpc.StatusCode.UNAVAILABLE.value[0]
        await stream.done_writing()
        assert await stream.read() is grpc.aio.EOF
        assert await stream.code() == grpc.StatusCode.OK
        reply = await stub.GetStats(pb.GetStatsRequest(topics=["t"]))
        assert reply.topics[0].pending == 1  # the late call was not enqueued


async def test_each_call_keeps_its_own_trace_context_else_the_streams(server) -> None:  # type: ignore[no-untyped-def]
    """A call's well-formed `traceparent` goes with its task; an empty or malformed one gives
    way to the stream's `traceparent` metadata."""
    own = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    streams = "00-" + "c" * 32 + "-" + "d" * 16 + "-01"
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        stream = stub.EnqueueStream(metadata=(("traceparent", streams),))
        message = calls((1, "tr"), (2, "tr"), (3, "tr"))
        message.calls[0].traceparent = own
        message.calls[1].traceparent = "not-a-traceparent"
        await stream.write(message)
        reply = await stream.read()
        await stream.done_writing()
        ids = [r.id for r in reply.results]
        got = await stub.Retrieve(pb.RetrieveRequest(topic="tr", batch_size=3))
        trace_of = {t.id: t.traceparent for t in got.tasks}
        assert [trace_of[i] for i in ids] == [own, streams, streams]
