"""The worker stream (rpc Work): one `WorkStream` per connected worker.

A worker subscribes to topics with a credit window; the server pushes leased tasks as soon as
they are due and the window allows (several per message, never more bytes than the worker
accepts), woken by the same pub/sub wake-ups and timers as the long poll; settles arrive on the
same stream, are answered by seq and free their credits. While the stream lives the server
renews its tasks' leases. How the stream ends decides what happens to the tasks it still holds:

| end                                   | held tasks                                          |
|---------------------------------------|-----------------------------------------------------|
| goodbye, then the worker half-closes  | released, the attempt not counted                   |
| broken (killed, reset, keepalive)     | released at once, attempt counted, "worker lost"    |
| this server stops (drain)             | kept: the worker adopts them (HOLD) on a new stream |

Imports grpc and the store; converts and delegates like the servicer does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import grpc

from appliance import metrics, validation
from appliance.api import convert
from appliance.api.interceptors import current_principal
from appliance.config import TASK_FIELDS_MAX_BYTES, Settings
from appliance.errors import AtpError, InvalidArgument, NotFound, StaleLease
from appliance.keys import topic_of_token
from appliance.model import WorkerStream
from appliance.proto import queue_pb2 as pb
from appliance.proto.status import status_of
from appliance.store import Store
from appliance.store.store import Claim
from appliance.store.wakeups import Wakeups, sleep_until
from appliance.store.workers import WorkerRegistry

log = logging.getLogger(__name__)
RECHECK_S = 5.0  # an idle stream re-checks its topics at least this often (a lost wake-up)
LOST_ERROR = "worker lost: its stream ended without a goodbye"
GOODBYE_ERROR = "released: the worker said goodbye before settling"
SILENT_S = 10.0  # a worker that pings (the SDK: every second) and sent nothing this long is lost
MESSAGE_OVERHEAD_BYTES = 64  # WorkResponse/WorkDelivery framing around the tasks
ERROR_PAUSE_S = 0.5  # after a failed claim or renewal (Redis unreachable)
REPORT_S = 5.0  # each stream rewrites its entry in the workers registry this often
REPORT_CHECK_S = 1.0  # ... and sooner when its credits or tasks in flight changed
REPORT_TTL_MS = 15_000  # an entry not rewritten for this long is gone (its server died)
SERVER = f"{socket.gethostname()}:{os.getpid()}"  # names this server process in the registry


class End(enum.Enum):
    """How a stream ended; decides what becomes of the tasks it holds (see the table above)."""

    GOODBYE = "goodbye"
    LOST = "lost"
    SERVER_STOP = "server stop"


def count_delivered(topic: str, claim: Claim) -> None:
    """Metrics of a claim that leased tasks: how many, and how late after their due time."""
    if claim.rows:
        metrics.DELIVERED.labels(topic).inc(len(claim.rows))
        observe, now = metrics.LATENESS.labels(topic).observe, claim.now_ms
        for row in claim.rows:
            observe(max(now - row.due_ms, 0) / 1000)


def reply_budget(value: int, settings: Settings, field: str) -> int:
    """The byte budget of a reply: the receiver's limit (0: the default), within what this
    server may send, and never below one task of the largest payload."""
    validation.non_negative(value, field)
    budget = min(value or settings.reply_bytes_default, settings.grpc_max_message_bytes)
    least = settings.payload_max_bytes + TASK_FIELDS_MAX_BYTES
    if budget < least:
        raise InvalidArgument(
            f"{field} must be 0 or >= {least} (one task of the largest payload), got {value}"
        )
    return budget - MESSAGE_OVERHEAD_BYTES


class Subscription:
    """A validated WorkSubscribe."""

    def __init__(self, request: pb.WorkSubscribe, settings: Settings) -> None:
        if not request.topics:
            raise InvalidArgument("subscribe: topics must name at least one topic")
        if len(request.topics) > settings.batch_max:
            raise InvalidArgument(f"subscribe: more than {settings.batch_max} topics")
        self.caps: dict[str, int] = {}
        for t in request.topics:
            topic = validation.topic(t.topic, "topics[].topic")
            current_principal().check_topic(topic)
            validation.non_negative(t.max_in_flight, "topics[].max_in_flight", 1 << 30)
            if topic in self.caps:
                raise InvalidArgument(f"subscribe: topic {topic!r} is named twice")
            self.caps[topic] = t.max_in_flight or (1 << 30)
        if request.credits < 1:
            raise InvalidArgument(f"subscribe: credits must be >= 1, got {request.credits}")
        self.credits = request.credits
        self.lease_ms = validation.lease_ms(
            request.visibility_timeout_ms,
            settings.visibility_timeout_ms,
            settings.max_visibility_timeout_ms,
        )
        self.max_bytes = reply_budget(request.max_message_bytes, settings, "max_message_bytes")
        self.name = request.worker_name[:128]


class WorkStream:
    """One worker's stream: its window, the leases it holds, and the loops that serve it (read
    the worker's messages, push due tasks, answer settles, renew leases, end on server stop)."""

    def __init__(
        self,
        store: Store,
        wakeups: Wakeups,
        settings: Settings,
        subscription: Subscription,
        stopping: asyncio.Event,
    ) -> None:
        self.store = store
        self.wakeups = wakeups
        self.settings = settings
        self.sub = subscription
        self.stopping = stopping
        self.window = subscription.credits
        self.held: dict[str, str] = {}  # lease token -> task id
        self.held_by_topic: collections.Counter[str] = collections.Counter()
        self.out: asyncio.Queue[pb.WorkResponse | None] = asyncio.Queue()
        self.settles: list[pb.WorkSettle] = []
        self.settle_ready = asyncio.Event()
        self.room = asyncio.Event()  # the window or a topic's cap may have room again
        self.filling = asyncio.Lock()  # one claim round at a time (push loop, settle answers)
        self.end = End.LOST
        self.closed = False
        self.leaving = False  # the worker said goodbye: push nothing more
        self._pongs: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []  # serve()'s, while it runs
        self.pinging = False  # the worker pings: its silence is a verdict (see _watch_silence)
        self.heard_at = 0.0  # loop time of its latest message
        self._rotation = collections.deque(subscription.caps)
        self.stream_id = secrets.token_hex(6)  # names the stream in histories and the registry
        self.who = f"stream {self.stream_id} {subscription.name or '-'}"
        self.peer = ""  # the worker's address, set by the servicer
        self.connected_ms = self.last_seen_ms = int(time.time() * 1000)
        self.registry = WorkerRegistry(store)

    # -- the stream ------------------------------------------------------------------------

    async def serve(
        self, requests: AsyncIterator[pb.WorkRequest]
    ) -> AsyncIterator[pb.WorkResponse]:
        """Yield what goes to the worker until the stream ends (then the caller runs
        settle_held(), in a task of its own)."""
        now = await self.store.now_ms()
        yield pb.WorkResponse(
            welcome=pb.WorkWelcome(
                now_ms=now,
                visibility_timeout_ms=self.sub.lease_ms,
                max_message_bytes=self.sub.max_bytes + MESSAGE_OVERHEAD_BYTES,
            )
        )
        self._loops = [
            asyncio.create_task(self._read(requests), name="atp-work-read"),
            asyncio.create_task(self._push(), name="atp-work-push"),
            asyncio.create_task(self._answer(), name="atp-work-settle"),
            asyncio.create_task(self._renew(), name="atp-work-renew"),
            asyncio.create_task(self._watch_stop(), name="atp-work-stop"),
            asyncio.create_task(self._watch_silence(), name="atp-work-silence"),
            asyncio.create_task(self._report(), name="atp-work-report"),
        ]
        try:
            while (message := await self._next_message()) is not None:
                yield message
        finally:
            self.halt()
            await asyncio.gather(*self._loops, return_exceptions=True)

    def halt(self) -> None:
        """Stop the stream's loops (renewals above all): the call ended. Called from serve()'s
        `finally` and from gRPC's done callback for the call, so the loops stop even if this
        generator is left suspended at its `yield` by a call cancelled mid-send."""
        self.close(End.LOST)  # no-op when it ended for a reason of its own
        for loop in self._loops:
            loop.cancel()

    async def _next_message(self) -> pb.WorkResponse | None:
        """What is queued to go, merged into one message (deliveries only while they fit)."""
        message = await self.out.get()
        while message is not None and not self.out.empty():
            part = self.out.get_nowait()
            if part is None:
                self.out.put_nowait(None)  # end after this message
                break
            if part.HasField("delivery") and message.HasField("delivery"):
                size = message.delivery.ByteSize() + part.delivery.ByteSize()
                if size > self.sub.max_bytes:
                    self.out.put_nowait(part)  # behind it, in the next message
                    break
            message.MergeFrom(part)
        return message

    def close(self, end: End) -> None:
        """End the stream; the first reason wins."""
        if not self.closed:
            self.closed, self.end = True, end
            self.out.put_nowait(None)

    def send(self, message: pb.WorkResponse) -> None:
        self.out.put_nowait(message)

    async def _pong(self, seq: int) -> None:
        """Answer a ping at once: the worker learns the stream lives (and the server's time)."""
        with contextlib.suppress(AtpError):
            now = await self.store.now_ms()
            self.send(pb.WorkResponse(heartbeat=pb.WorkHeartbeat(now_ms=now, ping_seq=seq)))

    async def _watch_stop(self) -> None:
        await self.stopping.wait()
        self.close(End.SERVER_STOP)

    async def _watch_silence(self) -> None:
        """A worker that pings but sent nothing for SILENT_S is lost, as one that misses the
        transport's keepalive (5 s + 5 s) is. Behind a proxy (nginx) the keepalive pings reach
        only the proxy, which answers them; this finds a frozen worker there (ADR 0014)."""
        loop = asyncio.get_running_loop()
        while not self.closed:
            await asyncio.sleep(SILENT_S / 10)
            if self.pinging and loop.time() - self.heard_at > SILENT_S:
                log.info("work stream of %r: no ping for %.0f s, lost", self.sub.name, SILENT_S)
                self.close(End.LOST)

    async def _read(self, requests: AsyncIterator[pb.WorkRequest]) -> None:
        """Take the worker's messages; a broken or half-closed stream without goodbye is lost."""
        loop = asyncio.get_running_loop()
        try:
            async for request in requests:
                self.heard_at = loop.time()
                self.last_seen_ms = int(time.time() * 1000)
                kind = request.WhichOneof("kind")
                if kind == "settle":
                    self.settles.extend(request.settle.settles)
                    self.settle_ready.set()
                elif kind == "credit":
                    validation.non_negative(request.credit.credits, "credit.credits", 1 << 20)
                    self.window += request.credit.credits
                    self.room.set()
                elif kind == "ping":
                    self.pinging = True
                    pong = asyncio.create_task(self._pong(request.ping.seq))
                    self._pongs.add(pong)
                    pong.add_done_callback(self._pongs.discard)
                elif kind == "goodbye":
                    self.leaving = True  # push no more; settles go on until the half-close
                else:
                    raise InvalidArgument(f"unexpected {kind or 'empty'} message on the stream")
        except AtpError as exc:
            log.info("work stream of %r refused: %s", self.sub.name, exc)
        except Exception as exc:  # the transport broke: the worker is gone
            log.debug("work stream of %r broke: %s", self.sub.name, exc)
        else:  # half-closed: clean only after a goodbye
            self.close(End.GOODBYE if self.leaving else End.LOST)
        self.close(End.LOST)  # no-op when closed above: the first reason wins

    # -- pushing due tasks -----------------------------------------------------------------

    async def _push(self) -> None:
        loop = asyncio.get_running_loop()
        with self.wakeups.watch_many(self.sub.caps, self.room) as woken:
            while not self.closed:
                woken.clear()
                try:
                    async with self.filling:
                        wake_at = await self._fill(loop.time())
                except AtpError as exc:
                    log.warning("work stream of %r: claim failed: %s", self.sub.name, exc)
                    wake_at = loop.time() + ERROR_PAUSE_S
                if wake_at is not None:
                    await sleep_until(wake_at, woken)

    async def _fill(self, started: float) -> float | None:
        """Claim and push what is due while there is room. None: pushed something, try again
        at once; else the loop time to look again (the next due time, or a re-check)."""
        wake_at = started + RECHECK_S
        pushed = False
        for _ in range(len(self._rotation)):
            # a closed stream claims nothing: what it claimed would reach no worker
            room = 0 if self.leaving or self.closed else self.window - len(self.held)
            if room <= 0:
                return wake_at if not pushed else None
            topic = self._rotation[0]
            self._rotation.rotate(-1)
            want = min(room, self.sub.caps[topic] - self.held_by_topic[topic])
            if want <= 0:
                continue
            sent = asyncio.get_running_loop().time()
            claim = await self.store.claim(
                topic,
                min(want, self.settings.batch_max),
                self.sub.lease_ms,
                None,
                self.sub.max_bytes,
                self.who,
            )
            if claim.rows:
                self._deliver(topic, claim)
                pushed = True
            elif claim.next_due_in_us >= 0:
                now = asyncio.get_running_loop().time()
                wake_at = min(wake_at, (sent + now) / 2 + claim.next_due_in_us / 1e6)
        return None if pushed else wake_at

    def _deliver(self, topic: str, claim: Claim) -> None:
        for row in claim.rows:
            self.held[row.token.decode()] = row.id.decode()
        self.held_by_topic[topic] += len(claim.rows)
        count_delivered(topic, claim)
        tasks = convert.leased_to_pb(topic, claim.rows)
        self.send(pb.WorkResponse(delivery=pb.WorkDelivery(tasks=tasks, now_ms=claim.now_ms)))

    def _forget(self, token: str, wake: bool = True) -> None:
        """The lease is settled or gone; `wake`: the push loop looks at the room it frees."""
        if self.held.pop(token, None) is not None:
            self.held_by_topic[topic_of_token(token)] -= 1
            if wake:
                self.room.set()

    # -- settles ---------------------------------------------------------------------------

    async def _answer(self) -> None:
        while True:
            await self.settle_ready.wait()
            self.settle_ready.clear()
            batch, self.settles = self.settles, []
            # Fill the credits these settles free before answering, so the answers and the
            # next tasks leave in one message: the acks claim the room they free in their own
            # round trip (_ack), what the other settles (nack, release) free in one more.
            async with self.filling:
                results, freed = await self._settle(batch)
                if freed:
                    with contextlib.suppress(AtpError):  # the push loop retries and logs
                        await self._fill(asyncio.get_running_loop().time())
            self.send(pb.WorkResponse(settled=pb.WorkSettledBatch(settled=results)))

    async def _settle(self, batch: Sequence[pb.WorkSettle]) -> tuple[list[pb.WorkSettled], bool]:
        """Every settle of a batch, acks and holds in one round trip each; results by seq, and
        whether it freed room the acks' own claim did not fill (a nack or release)."""
        results: dict[int, pb.WorkSettled] = {}
        acks: list[tuple[int, str, str]] = []
        holds: list[tuple[int, str, str]] = []
        others: list[tuple[int, pb.WorkSettle, str, str]] = []
        for n, s in enumerate(batch):
            try:
                task_id, token = _lease(s.id, s.lease_token)
                if s.kind == pb.ACK:
                    validation.payload(s.result, self.settings.payload_max_bytes)
                    acks.append((n, task_id, token))
                elif s.kind == pb.HOLD:
                    holds.append((n, task_id, token))
                elif s.kind in (pb.NACK, pb.RELEASE):
                    validation.non_negative(
                        s.retry_after_ms, "retry_after_ms", validation.MAX_DELAY_MS
                    )
                    others.append((n, s, token, validation.error_text(s.error)))
                else:
                    raise InvalidArgument(f"settle kind {s.kind} is not ACK, NACK, RELEASE, HOLD")
            except AtpError as exc:
                results[n] = _failed(s.seq, exc)
        if acks:
            await self._ack(batch, acks, results)
        if holds:
            await self._hold(batch, holds, results)
        if others:
            answers = await asyncio.gather(*(self._nack(batch[n], t, e) for n, _, t, e in others))
            results.update((n, a) for (n, *_), a in zip(others, answers, strict=True))
        return [results[n] for n in range(len(batch))], bool(others)

    async def _ack(
        self,
        batch: Sequence[pb.WorkSettle],
        acks: list[tuple[int, str, str]],
        results: dict[int, pb.WorkSettled],
    ) -> None:
        freed = collections.Counter(topic_of_token(t) for _, _, t in acks if t in self.held)
        topic_want = self._room_after(freed)
        claim = None
        if topic_want is not None:
            topic, want = topic_want
            claim = (topic, want, self.sub.lease_ms, self.sub.max_bytes, self.who)
        try:
            outputs = [batch[n].result for n, _, _ in acks]
            outcome, claimed = await self.store.ack_then_claim(
                [(i, t) for _, i, t in acks], outputs, claim
            )
        except AtpError as exc:
            results.update((n, _failed(batch[n].seq, exc)) for n, _, _ in acks)
            return
        acked: collections.Counter[str] = collections.Counter()
        for (n, _, token), error in zip(acks, outcome, strict=True):
            self._forget(token, wake=False)
            if error is None:
                acked[topic_of_token(token)] += 1
                results[n] = pb.WorkSettled(seq=batch[n].seq, success=True)
            else:
                results[n] = _failed(batch[n].seq, error)
        for topic, count in acked.items():
            metrics.ACKED.labels(topic).inc(count)
        if claimed is not None and claimed.rows:
            self._deliver(claimed.topic, claimed)
        if not self._claimed_all(topic_want, claimed):
            self.room.set()

    def _claimed_all(self, want: tuple[str, int] | None, claimed: Claim | None) -> bool:
        """Whether an ack's claim left the push loop nothing to look for: the stream's one
        topic had nothing pending after it (a task written, nacked or recovered later
        publishes a wake-up). Otherwise the push loop looks at the room the acks freed."""
        return (
            want is not None
            and claimed is not None
            and len(self.sub.caps) == 1
            and len(claimed.rows) < want[1]
            and claimed.next_due_in_us < 0
        )

    def _room_after(self, freed: collections.Counter[str]) -> tuple[str, int] | None:
        """The topic to claim for, and how many, once the held tasks counted in `freed` (by
        topic) are settled: the next topic of the rotation with room (as _fill takes them)."""
        room = 0 if self.leaving else self.window - len(self.held) + sum(freed.values())
        for _ in range(len(self._rotation)):
            if room <= 0:
                return None
            topic = self._rotation[0]
            self._rotation.rotate(-1)
            want = min(room, self.sub.caps[topic] - self.held_by_topic[topic] + freed[topic])
            if want > 0:
                return topic, min(want, self.settings.batch_max)
        return None

    async def _hold(
        self,
        batch: Sequence[pb.WorkSettle],
        holds: list[tuple[int, str, str]],
        results: dict[int, pb.WorkSettled],
    ) -> None:
        try:
            outcome = await self.store.extend_many([(i, t) for _, i, t in holds], self.sub.lease_ms)
        except AtpError as exc:
            results.update((n, _failed(batch[n].seq, exc)) for n, _, _ in holds)
            return
        for (n, task_id, token), deadline in zip(holds, outcome, strict=True):
            if isinstance(deadline, Exception):
                results[n] = _failed(batch[n].seq, deadline)
                continue
            if token not in self.held:
                self.held[token] = task_id
                self.held_by_topic[topic_of_token(token)] += 1
            results[n] = pb.WorkSettled(seq=batch[n].seq, success=True, lease_deadline_ms=deadline)

    async def _nack(self, settle: pb.WorkSettle, token: str, error: str) -> pb.WorkSettled:
        """NACK or RELEASE of one task, as the unary Nack does it."""
        topic = topic_of_token(token)
        try:
            if settle.kind == pb.RELEASE:
                result = await self.store.release(settle.id, token, settle.retry_after_ms, error)
                metrics.RELEASED.labels(topic).inc()
            else:
                result = await self.store.nack(
                    settle.id, token, error, settle.retry_after_ms, settle.dead_letter
                )
                metrics.NACKED.labels(topic).inc()
                if result.dead_lettered:
                    metrics.DEAD_LETTERED.labels(topic).inc()
        except AtpError as exc:
            if isinstance(exc, StaleLease | NotFound):  # not ours any more
                self._forget(token)
            return _failed(settle.seq, exc)
        self._forget(token)
        return pb.WorkSettled(
            seq=settle.seq,
            success=True,
            dead_lettered=result.dead_lettered,
            next_execute_time_ms=result.next_execute_time_ms,
        )

    # -- the workers registry --------------------------------------------------------------

    def figures(self) -> WorkerStream:
        return WorkerStream(
            stream_id=self.stream_id,
            worker_name=self.sub.name,
            server=SERVER,
            peer=self.peer,
            topics=tuple(self.sub.caps),
            credits=self.window,
            in_flight=len(self.held),
            connected_ms=self.connected_ms,
            last_seen_ms=self.last_seen_ms,
        )

    async def _report(self) -> None:
        """Keep this stream's entry in the workers registry fresh while it lives: written when
        its figures changed (looked at every REPORT_CHECK_S) or REPORT_S after the last write.
        The entry is dropped when the stream ends (settle_held), or expires if this server
        dies."""
        loop = asyncio.get_running_loop()
        written, at = None, 0.0
        while True:
            figures = self.figures()
            changed = (figures.credits, figures.in_flight) != written
            if changed or loop.time() - at >= REPORT_S:
                try:
                    await self.registry.report([figures], REPORT_TTL_MS)
                    written, at = (figures.credits, figures.in_flight), loop.time()
                except AtpError as exc:
                    log.debug("work stream of %r: registry not written: %s", self.sub.name, exc)
            await asyncio.sleep(REPORT_CHECK_S)

    # -- leases ----------------------------------------------------------------------------

    async def _renew(self) -> None:
        """Renew every held lease at a third of its length; drop the ones no longer ours, and
        tell the worker both (so it knows how long what it holds stays valid)."""
        period = self.sub.lease_ms / 3000
        while True:
            await asyncio.sleep(period)
            held = list(self.held.items())
            if not held:
                continue
            try:
                outcome = await self.store.extend_many(
                    [(task_id, token) for token, task_id in held], self.sub.lease_ms
                )
            except AtpError as exc:
                log.warning("work stream of %r: lease renewal failed: %s", self.sub.name, exc)
                continue
            revoked = [
                t for (t, _), d in zip(held, outcome, strict=True) if isinstance(d, Exception)
            ]
            for token in revoked:
                self._forget(token)
            renewed = [d for d in outcome if not isinstance(d, Exception)]
            deadline = min(renewed, default=0)
            self.send(
                pb.WorkResponse(renewed=pb.WorkRenewed(lease_deadline_ms=deadline, revoked=revoked))
            )

    async def settle_held(self) -> None:
        """After the stream: release what it still holds, as its end says (see the table)."""
        await asyncio.gather(*self._loops, return_exceptions=True)  # halted: none renews now
        if self.end is End.SERVER_STOP:
            return  # the store is closing: the registry entry expires (REPORT_TTL_MS)
        try:
            await self._release_held()
        finally:  # the leases first: the registry entry is only a view (and expires)
            with contextlib.suppress(AtpError):
                await self.registry.forget(self.stream_id)

    async def _release_held(self) -> None:
        leases = [(task_id, token) for token, task_id in self.held.items()]
        if not leases:
            return
        try:
            if self.end is End.LOST:
                moved = await self.store.release_lost(leases, LOST_ERROR)
                log.info("work stream of %r lost: %d tasks released", self.sub.name, moved)
                for topic, count in collections.Counter(
                    topic_of_token(t) for _, t in leases
                ).items():
                    metrics.LEASES_LOST.labels(topic).inc(count)
            else:
                await asyncio.gather(
                    *(self.store.release(i, t, 0, GOODBYE_ERROR) for i, t in leases),
                    return_exceptions=True,
                )
        except AtpError as exc:
            log.warning(
                "work stream of %r: %d tasks not released (%s); their leases run out",
                self.sub.name,
                len(leases),
                exc,
            )


def _lease(task_id: str, token: str) -> tuple[str, str]:
    task_id, token = validation.task_id(task_id), validation.lease_token(token)
    current_principal().check_topic(topic_of_token(token))
    return task_id, token


def _failed(seq: int, exc: Exception) -> pb.WorkSettled:
    code = status_of(exc).name if isinstance(exc, AtpError) else "INTERNAL"
    return pb.WorkSettled(seq=seq, success=False, code=code, error=str(exc))


async def open_stream(
    requests: AsyncIterator[pb.WorkRequest],
    context: grpc.aio.ServicerContext,
    settings: Settings,
) -> Subscription:
    """Read and validate the first message, which must subscribe; abort the call if not."""
    first: Any = None
    with contextlib.suppress(StopAsyncIteration):
        first = await requests.__anext__()
    try:
        if first is None or first.WhichOneof("kind") != "subscribe":
            raise InvalidArgument("the first message on a Work stream must be subscribe")
        return Subscription(first.subscribe, settings)
    except AtpError as exc:
        await context.abort(status_of(exc), str(exc))
        raise  # unreachable: abort raises
