"""Random request fields (strings, sizes, numbers) against a real server: every answer is a
proper status, and Redis never holds a half-written task."""

from __future__ import annotations

import grpc
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from tests.store.helpers import KEYS

EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
}
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
TEXT = st.one_of(
    st.text(max_size=300), st.sampled_from(["t", "a:b", "x" * 129, "{t}", "", "id 1", "ü"])
)

enqueue = st.builds(
    pb.EnqueueRequest,
    topic=TEXT,
    payload=st.text(max_size=2000),
    delay_seconds=INT64,
    id=TEXT,
    max_retries=INT32,
    delay_ms=INT64,
    execute_at_ms=INT64,
)
requests = st.one_of(
    st.tuples(st.just("Enqueue"), enqueue),
    st.tuples(
        st.just("EnqueueBatch"),
        st.builds(pb.EnqueueBatchRequest, requests=st.lists(enqueue, max_size=5)),
    ),
    st.tuples(
        st.just("Retrieve"),
        st.builds(
            pb.RetrieveRequest,
            topic=TEXT,
            batch_size=INT32,
            visibility_timeout_ms=INT64,
            wait_ms=st.integers(-5, 20),
        ),
    ),
    st.tuples(st.just("Ack"), st.builds(pb.AckRequest, id=TEXT, lease_token=TEXT)),
    st.tuples(
        st.just("Nack"),
        st.builds(
            pb.NackRequest,
            id=TEXT,
            lease_token=TEXT,
            error=TEXT,
            retry_after_ms=INT64,
            dead_letter=st.booleans(),
        ),
    ),
    st.tuples(
        st.just("ExtendLease"),
        st.builds(pb.ExtendLeaseRequest, id=TEXT, lease_token=TEXT, visibility_timeout_ms=INT64),
    ),
    st.tuples(st.just("Delete"), st.builds(pb.DeleteRequest, id=TEXT)),
    st.tuples(st.just("GetTask"), st.builds(pb.GetTaskRequest, id=TEXT)),
    st.tuples(
        st.just("ListDeadLetters"),
        st.builds(pb.ListDeadLettersRequest, topic=TEXT, limit=INT32, cursor=TEXT),
    ),
    st.tuples(
        st.just("RequeueDeadLetters"),
        st.builds(pb.RequeueDeadLettersRequest, topic=TEXT, ids=st.lists(TEXT, max_size=3)),
    ),
    st.tuples(
        st.just("GetStats"), st.builds(pb.GetStatsRequest, topics=st.lists(TEXT, max_size=3))
    ),
)


def consistent(r: redis.Redis) -> list[str]:
    """Every task record is whole and sits in the one set its state says."""
    problems = []
    for key in r.scan_iter(match=b"atp:{*}:task:*"):
        record = r.hgetall(key)
        topic = key.split(b"{", 1)[1].split(b"}", 1)[0].decode()
        task_id = key.split(b":task:", 1)[1]
        missing = {b"payload", b"due", b"created", b"maxr", b"attempt", b"state"} - set(record)
        if missing:
            problems.append(f"{key!r} lacks {missing}")
            continue
        tk = KEYS.topic(topic)
        where = {
            name
            for name, zkey in (("PENDING", tk.pending), ("RUNNING", tk.running), ("DEAD", tk.dlq))
            if r.zscore(zkey, task_id) is not None
        }
        state = record[b"state"].decode()
        expected = {state} if state in {"PENDING", "RUNNING", "DEAD"} else set()
        if where != expected:
            problems.append(f"{key!r} is {state} but in {where or 'no set'}")
    return problems


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(calls=st.lists(requests, min_size=1, max_size=4))
def test_random_requests_get_proper_statuses_and_leave_redis_whole(
    server_process, redis_client, calls
) -> None:  # type: ignore[no-untyped-def]
    with grpc.insecure_channel(server_process.address) as channel:
        stub = pb_grpc.DelayQueueServiceStub(channel)
        for method, request in calls:
            try:
                getattr(stub, method)(request, timeout=10)
            except grpc.RpcError as err:
                assert err.code() in EXPECTED, (method, request, err.code(), err.details())
                assert err.details(), (method, "an error must say why")
    assert consistent(redis_client) == []
