from appliance.proto import queue_pb2 as pb


async def test_enqueue_then_retrieve(stub) -> None:
    reply = await stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p"))
    assert reply.success and reply.id
    got = await stub.Retrieve(pb.RetrieveRequest(topic="t", batch_size=10))
    assert [t.id for t in got.tasks] == [reply.id]


def test_server_process_serves(server_process) -> None:
    import grpc

    from appliance.proto import queue_pb2_grpc as pb_grpc

    with grpc.insecure_channel(server_process.address) as ch:
        stub = pb_grpc.DelayQueueServiceStub(ch)
        reply = stub.Enqueue(pb.EnqueueRequest(topic="t", payload="p"))
        assert reply.success
