"""The fault scenarios, one named function each. A scenario starts the load, injects its faults
while the load runs, heals them and returns; the harness (chaos/harness.py) then waits for the
queue to drain, reads the final state and checks the history. Each is bounded: a few hundred
tasks, faults of seconds, loopback only. Leases are 1.5 s, so "longer than the lease" is ~4 s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import random
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from chaos.cluster import spread_topics
from chaos.flows import WF_TOPIC
from chaos.history import LogWriter, now_ms, read_events
from chaos.procs import Child, wait_for
from chaos.topology import CRON_TOPIC, TOPIC, Options, Topology
from chaos.toxics import Link

PAST_LEASE_S = 4.0  # a fault longer than the 1.5 s lease (and the watchdog's reaction)
PAST_KEEPALIVE_S = 12.0  # longer than the server's keepalive (5 s ping + 5 s timeout)
RESTART_WITHIN_MS = 1000  # a SIGKILLed stream worker's tasks start elsewhere within this
STREAM = Options(transport="stream", concurrency=10, prefetch=2)
# workflow advance kills: each Redis reply this late, so an advance spans tens of ms
ADVANCE_LATENCY = {"latency": 15, "jitter": 5}
ORPHAN_DEADLINE_S = 1.0  # every child of a SIGKILLed supervisor is gone within this
CLUSTER_TOPICS = spread_topics(TOPIC)  # one topic per master of the chaos cluster
CLUSTER = Options(cluster=True, topics=CLUSTER_TOPICS)
REPLICA_LAG_S = 0.5  # failover round 2: the replica is this far behind when its master dies


class Context:
    """What a scenario drives: the topology, and when its last fault healed."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.started = time.monotonic()
        self.healed_at: float | None = None
        self.schedules: dict[str, int] = {}  # id -> created (ms)
        self.notes: list[str] = []

    def at(self, seconds: float) -> None:
        """Sleep until `seconds` after the scenario began."""
        time.sleep(max(self.started + seconds - time.monotonic(), 0.0))

    def healed(self) -> None:
        self.healed_at = time.monotonic()

    def note(self, text: str) -> None:
        self.notes.append(f"{time.monotonic() - self.started:5.1f}s {text}")

    def produce(
        self, count: int = 300, rate: float = 30.0, seed: int = 1, long_every: int = 0
    ) -> Child:
        return self.topology.producer(count, rate, seed, long_every)

    def produce_runs(
        self, count: int = 150, rate: float = 10.0, seed: int = 1, *extra: str
    ) -> Child:
        return self.topology.run_producer(count, rate, seed, *extra)

    def busy_worker(self, workers: list[Child], timeout: float = 5.0) -> Child:
        """The first worker seen holding a task (else the first alive one)."""
        found: list[Child] = []

        def holding() -> bool:
            found[:] = [w for w in workers if w.alive() and self.topology.in_flight(w) > 0]
            return bool(found)

        if wait_for(holding, timeout, pause=0.02):
            return found[0]
        return next(w for w in workers if w.alive())


@dataclasses.dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Context], None]
    options: Options = dataclasses.field(default_factory=Options)
    quick: bool = False
    restart_within_ms: int | None = None  # checked: tasks cut by a SIGKILL restart this fast
    measures_loss: bool = False  # losses are the figure measured, not a failure (the default
    # durability across a failover: docs/adr/0013-durability.md)

    @property
    def topics(self) -> tuple[str, ...]:
        return self.options.topics


def latency(ctx: Context) -> None:
    """300 ms +- 200 ms on every Redis reply, for 8 s, under load."""
    ctx.produce()
    ctx.at(2)
    redis = ctx.topology.redis_link
    assert redis is not None
    redis.add("latency", "latency", "downstream", latency=300, jitter=200)
    ctx.note("redis link: latency 300+-200 ms")
    ctx.at(10)
    redis.remove("latency")
    ctx.healed()


def blackhole(ctx: Context) -> None:
    """Redis unreachable (timeout toxic: bytes held, connections kept) for longer than a lease;
    the held requests are delivered when it heals."""
    ctx.produce()
    ctx.at(3)
    redis = ctx.topology.redis_link
    assert redis is not None
    redis.both_ways("blackhole", "timeout", timeout=0)
    ctx.note(f"redis link: blackhole for {PAST_LEASE_S} s")
    ctx.at(3 + PAST_LEASE_S)
    redis.clear()
    ctx.healed()


def reset_peer(ctx: Context) -> None:
    """Six bursts of TCP resets on the Redis link while scripts run."""
    ctx.produce()
    _reset_bursts(ctx, ctx.topology.redis_link, "redis link")


def lost_replies(ctx: Context) -> None:
    """Redis replies delayed past the atp processes' socket timeout (2.5 s > 2 s) for 5 s:
    every script runs, its reply is lost, the store retries (the claim memo's and the settle
    tokens' idempotence is what keeps this safe)."""
    ctx.produce()
    ctx.at(3)
    redis = ctx.topology.redis_link
    assert redis is not None
    redis.add("late", "latency", "downstream", latency=2500, jitter=0)
    ctx.note("redis link: replies 2.5 s late (socket timeout 2 s) for 5 s")
    ctx.at(8)
    redis.remove("late")
    ctx.healed()


def slow(ctx: Context) -> None:
    """Slow and sliced responses for 8 s: Redis replies at 1 KB/s per connection in ~8-byte
    slices 3 ms apart; the API's replies to workers at 2 KB/s in ~16-byte slices."""
    ctx.produce()
    ctx.at(2)
    topo = ctx.topology
    assert topo.redis_link is not None and topo.grpc_link is not None
    topo.redis_link.add("bandwidth", "bandwidth", "downstream", rate=1)
    topo.redis_link.add(
        "slicer", "slicer", "downstream", average_size=8, size_variation=4, delay=3000
    )
    topo.grpc_link.add("bandwidth", "bandwidth", "downstream", rate=2)
    topo.grpc_link.add(
        "slicer", "slicer", "downstream", average_size=16, size_variation=8, delay=2000
    )
    ctx.note("redis link: 1 KB/s + 8-byte slices; grpc link: 2 KB/s + 16-byte slices")
    ctx.at(10)
    topo.toxiproxy.heal()
    ctx.healed()


def grpc_reset(ctx: Context) -> None:
    """Six bursts of TCP resets on the workers' link to the API: Retrieve replies lost after
    the server leased tasks (leased to nobody until the lease runs out), Acks lost."""
    ctx.produce()
    _reset_bursts(ctx, ctx.topology.grpc_link, "grpc link")


def partition(ctx: Context) -> None:
    """A worker cut from the API (both ways) for longer than its lease while it holds tasks,
    then healed: the others take its tasks over, and its late Acks must be refused."""
    topo = ctx.topology
    solo, link = topo.solo, topo.solo_link
    assert solo is not None and link is not None
    ctx.produce(long_every=5)
    for start in (2.0, 9.0):
        ctx.at(start)
        holding = wait_for(lambda: topo.in_flight(solo) > 0, 5, pause=0.01)
        link.both_ways("cut", "timeout", timeout=0)
        ctx.note(f"grpc-solo cut for {PAST_LEASE_S} s (holding tasks: {holding})")
        time.sleep(PAST_LEASE_S)
        link.clear()
    ctx.healed()


def worker_kill(ctx: Context) -> None:
    """SIGKILL workers mid-task (three rounds, two workers in the second), restart them."""
    topo = ctx.topology
    ctx.produce(long_every=7)
    for start, victims in ((2.0, 1), (5.0, 2), (8.0, 1)):
        ctx.at(start)
        killed = []
        for _ in range(victims):
            alive = [w for w in topo.workers if w.alive()]
            victim = ctx.busy_worker(alive)
            holding = topo.in_flight(victim)
            topo.kill_worker(victim)
            killed.append(victim)
            ctx.note(f"SIGKILL {victim.name} holding {holding} task(s)")
        time.sleep(0.5)
        for victim in killed:
            victim.restart()
            topo.wait_worker_ready(victim)
    ctx.healed()


def worker_stop(ctx: Context) -> None:
    """SIGSTOP a worker holding tasks for longer than its lease, then SIGCONT (twice)."""
    topo = ctx.topology
    ctx.produce(long_every=7)
    for start in (2.0, 8.0):
        ctx.at(start)
        victim = ctx.busy_worker(topo.workers)
        holding = topo.in_flight(victim)
        victim.signal(signal.SIGSTOP)
        ctx.note(f"SIGSTOP {victim.name} holding {holding} task(s) for {PAST_LEASE_S} s")
        time.sleep(PAST_LEASE_S)
        victim.signal(signal.SIGCONT)
    ctx.healed()


def redis_restart(ctx: Context) -> None:
    """SIGKILL redis-server mid-load and start it again on its AOF (twice)."""
    ctx.produce()
    for start in (3.0, 7.0):
        ctx.at(start)
        ctx.note("redis SIGKILLed, restarted 1.5 s later on its AOF")
        ctx.topology.restart_redis(down_s=1.5)
    ctx.healed()


def server_kill(ctx: Context) -> None:
    """SIGKILL the API server mid-load (long polls and settles in flight) and start it again
    on its port 1 s later, twice."""
    topo = ctx.topology
    assert topo.api is not None
    api = topo.api
    server = next(c for c in topo.children if c.name == "server")
    ctx.produce()
    for start in (3.0, 7.0):
        ctx.at(start)
        ctx.note("atp server SIGKILLed, restarted 1 s later")
        server.kill()
        time.sleep(1.0)
        server.restart()
        if not wait_for(api.ready, 30):
            raise RuntimeError(f"atp server did not come back: {server.output()}")
    ctx.healed()


def lb_server_kill(ctx: Context) -> None:
    """Two servers behind nginx, every client dialing nginx: SIGKILL one under load (its
    streams and calls break, the clients reconnect through nginx to the other), restart it 1 s
    later; 1 s after it serves again, the same to the other one. Notes how long the broken
    streams took to reopen."""
    topo = ctx.topology
    ctx.produce(long_every=7)
    ctx.at(3.0)
    for server in topo.servers:
        killed_ms = now_ms()
        topo.kill_server(server)
        ctx.note(f"SIGKILL {server.name} behind nginx")
        time.sleep(1.0)
        server.restart()
        topo.wait_server_ready(server)
        ctx.note(f"{server.name} serves again{_reopened(topo, killed_ms)}")
        time.sleep(1.0)
    ctx.healed()


def lb_server_kill_unary(ctx: Context) -> None:
    """lb_server_kill with unary workers: long polls, Acks and ExtendLease calls in flight on
    the killed server fail; the next ones go through nginx to the other server."""
    lb_server_kill(ctx)


def _reopened(topo: Topology, killed_ms: int) -> str:
    """How long the worker streams broken by a kill at `killed_ms` took to reopen (a note's
    tail; empty for unary workers)."""
    took = []
    for worker in topo.workers:
        events = _events(topo.run_dir / f"{worker.name}.jsonl")
        ended = [e for e in events if e["ev"] == "stream_end" and e["t_ms"] >= killed_ms]
        if ended:
            opened = [e["t_ms"] for e in events if e["ev"] == "stream" and "held" in e]
            later = [t for t in opened if t >= ended[0]["t_ms"]]
            took.append(f"{min(later) - killed_ms} ms" if later else "not yet")
    return f"; streams reopened after {', '.join(took)}" if took else ""


def scheduler_kill(ctx: Context) -> None:
    """A 1 s interval schedule, three schedulers: SIGKILL the leader twice (restarting it),
    then SIGSTOP the leader past its lease and SIGCONT it; one task per tick throughout."""
    topo = ctx.topology
    assert topo.api is not None
    api = topo.api
    ctx.schedules["chaos-tick"] = now_ms()
    api.create_interval_schedule("chaos-tick", CRON_TOPIC, 1000, '{"ms": 20}')
    ctx.produce(count=150, rate=15.0)
    for start in (3.0, 7.0):
        ctx.at(start)
        leader = _leader(ctx)
        leader.kill()
        ctx.note(f"SIGKILL scheduler leader {leader.name}")
        time.sleep(1.0)
        leader.restart()
    ctx.at(11)
    leader = _leader(ctx)
    leader.signal(signal.SIGSTOP)
    ctx.note(f"SIGSTOP scheduler leader {leader.name} for 3 s")
    time.sleep(3.0)
    leader.signal(signal.SIGCONT)
    ctx.at(17)
    api.pause_schedule("chaos-tick")
    ctx.healed()


def supervisor_kill(ctx: Context) -> None:
    """SIGKILL the supervisor of `atp --role=all --data-dir D` under load (its embedded Redis,
    server, scheduler, watchdog and worker must all exit within 1 s: no orphan), restart it on
    the same data dir 0.5 s later; twice. Every acknowledged task must survive."""
    topo = ctx.topology
    sup = topo.supervisor
    assert sup is not None
    ctx.produce()
    for start in (3.0, 8.0):
        ctx.at(start)
        children = topo.appliance_children()
        sup.kill()
        killed = time.monotonic()
        gone = wait_for(
            functools.partial(_all_gone, list(children.values())), ORPHAN_DEADLINE_S, 0.01
        )
        took = time.monotonic() - killed
        orphans = {name: pid for name, pid in children.items() if _running([pid])}
        for pid in orphans.values():  # ours, by pid: a failed run leaves nothing behind
            os.kill(pid, signal.SIGKILL)
        if not gone:
            raise RuntimeError(f"orphans {ORPHAN_DEADLINE_S:g} s after SIGKILL: {orphans}")
        ctx.note(f"SIGKILL supervisor: its {len(children)} children gone in {took:.2f} s")
        time.sleep(0.5)
        sup.restart()
        restarted = time.monotonic()
        topo.wait_appliance_ready()
        ctx.note(
            f"restarted on the same data dir: serving after {time.monotonic() - restarted:.1f} s"
        )
    ctx.healed()


def stream_worker_kill(ctx: Context) -> None:
    """Stream workers (10 slots each): SIGKILL the busiest mid-task, three rounds, and restart
    it 0.5 s later; the server releases a broken stream's tasks at once, so they must start
    elsewhere within RESTART_WITHIN_MS (the checker measures each from faults.jsonl)."""
    topo = ctx.topology
    ctx.produce(long_every=7)
    for start in (2.0, 5.0, 8.0):
        ctx.at(start)
        victim = ctx.busy_worker([w for w in topo.workers if w.alive()])
        holding = topo.in_flight(victim)
        topo.kill_worker(victim)
        ctx.note(f"SIGKILL {victim.name} holding {holding} task(s)")
        time.sleep(0.5)
        victim.restart()
        topo.wait_worker_ready(victim)
    ctx.healed()


def stream_server_kill(ctx: Context) -> None:
    """server_kill with stream workers: their streams break, they reconnect to the restarted
    server and adopt (HOLD) what they hold; what cannot be adopted goes to others."""
    server_kill(ctx)


def stream_half_open(ctx: Context) -> None:
    """The solo stream worker's link to the API held both ways (timeout toxic: no bytes, no
    close) for longer than the server's keepalive, while it holds tasks, then healed. The
    server must find the stream dead by keepalive and release its tasks to the others; the
    cut-off worker must start nothing it held."""
    topo = ctx.topology
    solo, link = topo.solo, topo.solo_link
    assert solo is not None and link is not None
    ctx.produce(long_every=5)
    ctx.at(2.0)
    holding = wait_for(lambda: topo.in_flight(solo) > 0, 5, pause=0.01)
    cut = now_ms()
    link.both_ways("cut", "timeout", timeout=0)
    ctx.note(f"grpc-solo held (half-open) for {PAST_KEEPALIVE_S:g} s (holding tasks: {holding})")
    time.sleep(PAST_KEEPALIVE_S)
    link.clear()
    topo.silenced(solo, cut)
    ctx.healed()
    held = _held_by(_events(topo.run_dir / "worker-solo.jsonl"), cut)
    taken = _first_starts(topo.run_dir, held, cut, exclude="solo")
    if taken:
        ctx.note(
            f"{len(taken)} of the {len(held)} task(s) it held started elsewhere, the first"
            f" {min(taken.values()) - cut} ms after the cut (keepalive 5 s + 5 s)"
        )
    else:
        ctx.note(f"none of the {len(held)} task(s) it held started elsewhere during the cut")


def stream_worker_stop(ctx: Context) -> None:
    """SIGSTOP a stream worker (3 slots, 6 more prefetched, under a backlog) while it holds
    deliveries it has not started, for longer than its lease and the server's keepalive, then
    SIGCONT: it must start none of them (the checker's start-in-lease rule); twice."""
    topo = ctx.topology
    ctx.produce(count=300, rate=20.0, long_every=5)
    for start in (3.0, 17.0):
        ctx.at(start)
        victim = _holding_unstarted(ctx, topo.workers)
        path = topo.run_dir / f"{victim.name}.jsonl"
        victim.signal(signal.SIGSTOP)
        stopped = now_ms()
        held = _unstarted(_events(path), stopped)
        time.sleep(PAST_KEEPALIVE_S)
        victim.signal(signal.SIGCONT)
        resumed = now_ms()
        topo.silenced(victim, stopped)
        time.sleep(2.0)
        after = [e for e in _events(path) if _stamp(e) >= resumed]
        started = sum(1 for e in after if e["ev"] == "start" and e["token"] in held)
        skipped = sum(1 for e in after if e["ev"] == "skip" and e["token"] in held)
        refused = sum(1 for e in after if _refused_hold(e) and e["token"] in held)
        ctx.note(
            f"SIGSTOP {victim.name} for {PAST_KEEPALIVE_S:g} s holding {len(held)} unstarted"
            f" deliveries; after SIGCONT it started {started} of them, skipped {skipped} (lease"
            f" deadline passed), {refused} refused when it tried to adopt them (HOLD: stale)"
        )
    ctx.healed()


def stream_stop_long_lease(ctx: Context) -> None:
    """stream_worker_stop with 20 s leases: on SIGCONT the deadlines of what the worker holds
    have not passed, so only the stream's freshness can keep it from starting deliveries the
    server released when its keepalive found the stream dead."""
    stream_worker_stop(ctx)


def cluster_failover(ctx: Context) -> None:
    """A 3-master, 3-replica Redis Cluster under load (a producer per master's topic): SIGKILL
    the master of one topic and wait until its replica is promoted, then start the killed node
    again (it rejoins as the new master's replica). Round 1 kills a master whose replica is up
    to date. Round 2 first cuts the replica off (SIGSTOP, and the master's replication link
    closed, as a network partition would), kills the master REPLICA_LAG_S later and resumes
    the replica, which is promoted without what the master acknowledged meanwhile. With
    `--durability replicated` no acknowledged write may be lost; with the default the loss is
    counted and the loss window measured (faults.jsonl has each kill)."""
    topo = ctx.topology
    cluster = topo.cluster
    assert cluster is not None
    for n, topic in enumerate(CLUSTER_TOPICS):
        topo.producer(240, 12.0, seed=n + 1, name=f"producer-{topic}", topic=topic)
    rounds = ((3.0, CLUSTER_TOPICS[0], 0.0), (12.0, CLUSTER_TOPICS[1], REPLICA_LAG_S))
    for start, topic, lag in rounds:
        ctx.at(start)
        master = cluster.master_of(topic)
        replica = cluster.replica_of(master)
        if lag:
            cluster.pause(replica)
            cluster.cut_replicas(master)
            time.sleep(lag)
        with LogWriter(topo.run_dir / "faults.jsonl") as log:
            log.write("redis_kill", node=master.port, t_ms=now_ms(), lag_s=lag)
        cluster.kill(master)
        if lag:
            cluster.resume(replica)
        took = cluster.wait_promoted(topic, master)
        ctx.note(
            f"SIGKILL master {master.port} of {topic}"
            + (f" (its replica cut off {lag:g} s before)" if lag else "")
            + f": replica {replica.port} promoted after {took:.1f} s"
        )
        time.sleep(0.5)
        cluster.restart(master)
        if not wait_for(cluster.healthy, 30, pause=0.1):
            raise RuntimeError(f"the killed node did not rejoin: {cluster.describe()}")
        ctx.note(f"{master.port} restarted, a replica again: {cluster.describe()}")
    ctx.healed()


# -- workflow scenarios (runs checked by chaos/runcheck.py as well) --------------------------


def workflow_advance_kill(ctx: Context) -> None:
    """Two servers, both advancing runs, under load (diamond and order runs, cancels, signals),
    Redis replies ADVANCE_LATENCY late (an advance then takes tens of ms, so a kill lands inside
    one): SIGKILL one of them 0-60 ms after a worker's Ack (its advancer is woken by that Ack and
    busy with its run), restart it 0.5 s later on its port; five rounds, alternating the two."""
    topo = ctx.topology
    rng = random.Random(5)
    _slow_redis(ctx)
    ctx.produce_runs(150, 10.0)
    victims = [*topo.servers, topo.server()]
    for n, start in enumerate((2.0, 4.5, 7.0, 9.5, 12.0)):
        ctx.at(start)
        victim = victims[n % len(victims)]
        fresh = _kill_after_an_ack(ctx, victim, rng)
        ctx.note(f"SIGKILL {victim.name} {fresh}")
        time.sleep(0.5)
        victim.restart()
        topo.wait_server_ready(victim)
    ctx.healed()


def workflow_advance_kill_many(ctx: Context) -> None:
    """Three servers advancing, 300 runs at 15/s, Redis replies ADVANCE_LATENCY late: SIGKILL
    the two without clients in turn every 1.5 s, each 0-60 ms after an Ack, twelve times; a
    victim restarts at once (the others advance meanwhile) and is killed again once it serves."""
    topo = ctx.topology
    rng = random.Random(6)
    _slow_redis(ctx)
    ctx.produce_runs(300, 15.0, 3)
    for n in range(12):
        ctx.at(2.0 + 1.5 * n)
        victim = topo.servers[n % len(topo.servers)]
        topo.wait_server_ready(victim)
        _kill_after_an_ack(ctx, victim, rng)
        victim.restart()
    ctx.note("12 x SIGKILL of server-2 / server-3 0-60 ms after an Ack, each restarted at once")
    for victim in topo.servers:
        topo.wait_server_ready(victim)
    ctx.healed()


def _slow_redis(ctx: Context) -> None:
    redis = ctx.topology.redis_link
    assert redis is not None
    redis.add("slow", "latency", "downstream", **ADVANCE_LATENCY)
    ctx.note(f"redis link: {ADVANCE_LATENCY['latency']} +- {ADVANCE_LATENCY['jitter']} ms")


def _kill_after_an_ack(ctx: Context, victim: Child, rng: random.Random) -> str:
    """SIGKILL an atp server 0-60 ms after the next Ack a worker logs (its advancer is woken by
    that Ack: with a slow Redis its advance of the run takes a few round trips of that long)."""
    fresh = _after_next_ack(ctx)
    pause = rng.uniform(0, 0.06)
    time.sleep(pause)
    ctx.topology.kill_server(victim)
    return f"{pause * 1000:.0f} ms after an Ack" if fresh else "(no Ack seen)"


def workflow_redis_restart(ctx: Context) -> None:
    """SIGKILL redis-server with runs in flight and start it again on its AOF (twice)."""
    ctx.produce_runs(150, 10.0)
    for start in (3.0, 8.0):
        ctx.at(start)
        ctx.note("redis SIGKILLed, restarted 1.5 s later on its AOF")
        ctx.topology.restart_redis(down_s=1.5)
    ctx.healed()


def workflow_lost_acks(ctx: Context) -> None:
    """Lost replies on Ack, both hops: the API's replies to the workers 3.5 s late (past their
    3 s call timeout: every Ack lands and is retried with the same token) for 5 s; then Redis
    replies 2.5 s late (past the 2 s socket timeout: ack.lua, step_schedule, step_finish run
    and their replies are lost) for 4 s."""
    topo = ctx.topology
    assert topo.grpc_link is not None and topo.redis_link is not None
    ctx.produce_runs(150, 10.0)
    ctx.at(3)
    topo.grpc_link.add("late", "latency", "downstream", latency=3500, jitter=0)
    ctx.note("grpc link (workers): replies 3.5 s late (call timeout 3 s) for 5 s")
    ctx.at(8)
    topo.grpc_link.remove("late")
    ctx.at(10)
    topo.redis_link.add("late", "latency", "downstream", latency=2500, jitter=0)
    ctx.note("redis link: replies 2.5 s late (socket timeout 2 s) for 4 s")
    ctx.at(14)
    topo.redis_link.remove("late")
    ctx.healed()


def workflow_signal_race(ctx: Context) -> None:
    """Order runs only: `paid` sent within 150 ms either side of its 800 ms deadline (some
    twice, some never), two servers advancing, Redis replies 20 +- 15 ms late throughout (a
    wider gap between an advancer's read and its judgement), one advancing server SIGKILLed."""
    topo = ctx.topology
    assert topo.redis_link is not None
    topo.redis_link.add("slow", "latency", "downstream", latency=20, jitter=15)
    ctx.note("redis link: 20 +- 15 ms latency for the whole run")
    ctx.produce_runs(120, 10.0, 2, "--order-share", "1.0")
    ctx.at(6.0)
    victim = topo.servers[0]
    topo.kill_server(victim)
    ctx.note(f"SIGKILL {victim.name}")
    time.sleep(0.5)
    victim.restart()
    topo.wait_server_ready(victim)
    ctx.at(13.0)
    topo.redis_link.remove("slow")
    ctx.healed()


def _after_next_ack(ctx: Context, timeout: float = 3.0) -> bool:
    """Return as soon as a worker's log shows an Ack answered after this call began."""
    logs = list(ctx.topology.run_dir.glob("worker-*.jsonl"))
    since = now_ms()

    def acked() -> bool:
        for path in logs:
            try:
                tail = path.read_bytes()[-4000:].decode(errors="replace")
            except OSError:
                continue
            for line in tail.splitlines()[1:]:
                if '"kind":"ack"' in line and '"result":"ok"' in line:
                    with contextlib.suppress(ValueError):
                        if json.loads(line)["done_ms"] >= since:
                            return True
        return False

    return wait_for(acked, timeout, pause=0.002)


def cluster_failover_replicated(ctx: Context) -> None:
    """cluster_failover with `--durability replicated`: every acknowledgement waited for the
    replica, so no acknowledged enqueue or Ack may be lost (docs/adr/0013-durability.md)."""
    cluster_failover(ctx)


def _holding_unstarted(ctx: Context, workers: list[Child], timeout: float = 10.0) -> Child:
    """The first worker seen holding deliveries it has not started (else the busiest)."""
    run_dir = ctx.topology.run_dir
    found: list[Child] = []

    def holding() -> bool:
        now = now_ms()
        found[:] = [
            w
            for w in workers
            if w.alive() and _unstarted(_events(run_dir / f"{w.name}.jsonl"), now)
        ]
        return bool(found)

    if wait_for(holding, timeout, pause=0.05):
        return found[0]
    return ctx.busy_worker(workers)


def _events(path: Path) -> list[dict[str, Any]]:
    try:
        return list(read_events(path))
    except OSError:
        return []


def _stamp(e: dict[str, Any]) -> int:
    for key in ("t_ms", "start_ms", "sent_ms", "end_ms"):
        if key in e:
            return int(e[key])
    return 0


def _unstarted(events: list[dict[str, Any]], t_ms: int) -> set[str]:
    """Lease tokens a stream worker had received by `t_ms` and not started, skipped or
    released by then (the latest incarnation's: a restarted worker holds nothing)."""
    delivered: set[str] = set()
    done: set[str] = set()
    for e in events:
        if _stamp(e) > t_ms:
            break
        if e["ev"] == "ready":
            delivered, done = set(), set()
        elif e["ev"] == "delivered":
            delivered |= set(e["tokens"])
        elif e["ev"] in ("start", "skip") or _refused_hold(e):
            done.add(str(e["token"]))
    return delivered - done


def _refused_hold(e: dict[str, Any]) -> bool:
    return e["ev"] == "call" and e.get("via") == "hold" and e["result"] != "ok"


def _held_by(events: list[dict[str, Any]], t_ms: int) -> set[str]:
    """Task ids a stream worker held at `t_ms`: received and not settled or given back."""
    held: dict[str, str] = {}  # token -> task
    for e in events:
        if _stamp(e) > t_ms:
            break
        if e["ev"] == "ready":
            held = {}
        elif e["ev"] == "delivered":
            held.update(zip(e["tokens"], e["tasks"], strict=True))
        elif e["ev"] == "skip" or (e["ev"] == "call" and e.get("kind") != "extend"):
            held.pop(str(e["token"]), None)
    return set(held.values())


def _first_starts(run_dir: Path, ids: set[str], after_ms: int, exclude: str) -> dict[str, int]:
    """Task -> its first start after `after_ms` by a worker other than `exclude`."""
    first: dict[str, int] = {}
    for path in run_dir.glob("worker-*.jsonl"):
        for e in _events(path):
            if e["ev"] != "start" or e["worker"] == exclude or e["task"] not in ids:
                continue
            start = int(e["start_ms"])
            if start > after_ms and start < first.get(e["task"], start + 1):
                first[e["task"]] = start
    return first


def _all_gone(pids: Iterable[int]) -> bool:
    return not _running(pids)


def _running(pids: Iterable[int]) -> bool:
    """Any of `pids` still running (a zombie waiting for its reaper has exited)."""
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rpartition(")")[2].split()[0] != "Z":
            return True
    return False


def _reset_bursts(ctx: Context, link: Link | None, name: str) -> None:
    """Six bursts of TCP resets (0.3 s each, 1.2 s apart from 2 s on) on one link, then
    healed."""
    assert link is not None
    for n in range(6):
        ctx.at(2 + n * 1.2)
        link.add("reset", "reset_peer", "downstream", timeout=0)
        time.sleep(0.3)
        link.remove("reset")
    ctx.note(f"{name}: 6 x reset_peer for 0.3 s")
    ctx.healed()


def _leader(ctx: Context) -> Child:
    """The scheduler child that leads now (by the pid in GetSchedulerStatus)."""
    topo = ctx.topology
    assert topo.api is not None
    api = topo.api
    found: list[Child] = []

    def leading() -> bool:
        pid = api.leader_pid()
        found[:] = [s for s in topo.schedulers if s.alive() and s.pid == pid]
        return bool(found)

    if not wait_for(leading, 10, pause=0.1):
        raise RuntimeError(
            f"no scheduler of this run leads (pid {api.leader_pid()}, ours: "
            f"{[s.pid for s in topo.schedulers if s.alive()]}, me {os.getpid()})"
        )
    return found[0]


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("latency", "Redis replies 300+-200 ms late for 8 s", latency, quick=True),
        Scenario("blackhole", f"Redis blackholed {PAST_LEASE_S:.0f} s (> lease)", blackhole),
        Scenario("reset_peer", "6 bursts of TCP resets on the Redis link", reset_peer),
        Scenario("lost_replies", "Redis replies 2.5 s late (> 2 s socket timeout)", lost_replies),
        Scenario("slow", "Redis at 1 KB/s and sliced; API replies at 2 KB/s, sliced", slow),
        Scenario("grpc_reset", "6 bursts of TCP resets on the workers' API link", grpc_reset),
        Scenario(
            "partition",
            f"one worker cut from the API {PAST_LEASE_S:.0f} s (> lease), twice",
            partition,
            Options(solo_worker=True),
        ),
        Scenario("worker_kill", "SIGKILL workers mid-task, 3 rounds", worker_kill, quick=True),
        Scenario("worker_stop", "SIGSTOP a worker past its lease, SIGCONT, twice", worker_stop),
        Scenario(
            "redis_restart", "SIGKILL Redis, restart on AOF, twice", redis_restart, quick=True
        ),
        Scenario("server_kill", "SIGKILL the API server, restart it, twice", server_kill),
        Scenario(
            "scheduler_kill",
            "3 schedulers, 1 s ticks: SIGKILL leader x2, SIGSTOP leader",
            scheduler_kill,
            Options(schedulers=3, topics=(TOPIC, CRON_TOPIC)),
        ),
        Scenario(
            "supervisor_kill",
            "SIGKILL the atp --role=all supervisor, restart on its data dir, twice",
            supervisor_kill,
            Options(appliance=True),
            quick=True,  # about 20 s
        ),
    )
}
SCENARIOS.update(
    (s.name, s)
    for s in (
        Scenario(
            "stream_worker_kill",
            "stream workers: SIGKILL one mid-task, 3 rounds; its tasks restart within 1 s",
            stream_worker_kill,
            STREAM,
            quick=True,
            restart_within_ms=RESTART_WITHIN_MS,
        ),
        Scenario(
            "stream_server_kill",
            "stream workers: SIGKILL the API server (streams open), restart it, twice",
            stream_server_kill,
            STREAM,
        ),
        Scenario(
            "stream_half_open",
            f"stream: one worker's API link held both ways {PAST_KEEPALIVE_S:.0f} s (> keepalive)",
            stream_half_open,
            dataclasses.replace(STREAM, solo_worker=True),
        ),
        Scenario(
            "stream_stop_long_lease",
            f"stream_worker_stop with 20 s leases (> the {PAST_KEEPALIVE_S:.0f} s stop)",
            stream_stop_long_lease,
            dataclasses.replace(STREAM, concurrency=3, prefetch=6, lease_ms=20_000),
        ),
        Scenario(
            "lb_server_kill",
            "nginx + 2 servers, stream workers: SIGKILL each server in turn, restart it",
            lb_server_kill,
            dataclasses.replace(STREAM, lb_servers=2),
            quick=True,
        ),
        Scenario(
            "lb_server_kill_unary",
            "lb_server_kill with unary workers (long polls in flight)",
            lb_server_kill_unary,
            Options(lb_servers=2),
        ),
        Scenario(
            "stream_worker_stop",
            f"stream: SIGSTOP a worker {PAST_KEEPALIVE_S:.0f} s (> lease, keepalive), twice",
            stream_worker_stop,
            dataclasses.replace(STREAM, concurrency=3, prefetch=6),
        ),
    )
)
WORKFLOWS = Options(topics=(WF_TOPIC,), servers=2, workflows=True, concurrency=4)
SCENARIOS.update(
    (s.name, s)
    for s in (
        Scenario(
            "workflow_advance_kill",
            "2 advancing servers, slow Redis: SIGKILL one 0-60 ms after an Ack x5 (runs checked)",
            workflow_advance_kill,
            WORKFLOWS,
            quick=True,  # about 35 s
        ),
        Scenario(
            "workflow_advance_kill_many",
            "3 advancing servers, slow Redis: SIGKILL the 2 without clients x12 (runs checked)",
            workflow_advance_kill_many,
            dataclasses.replace(WORKFLOWS, servers=3),
        ),
        Scenario(
            "workflow_redis_restart",
            "runs in flight: SIGKILL Redis, restart on AOF, twice (runs checked)",
            workflow_redis_restart,
            WORKFLOWS,
        ),
        Scenario(
            "workflow_lost_acks",
            "Ack replies lost: API replies past the call timeout, then Redis's (runs checked)",
            workflow_lost_acks,
            WORKFLOWS,
        ),
        Scenario(
            "workflow_signal_race",
            "order runs: paid within 150 ms of its timeout, slow Redis, a SIGKILL (runs checked)",
            workflow_signal_race,
            WORKFLOWS,
        ),
        Scenario(
            "cluster_failover",
            "Redis Cluster 3+3: SIGKILL a master under load, twice (2nd: replica cut off"
            f" {REPLICA_LAG_S:g} s); default durability: losses measured",
            cluster_failover,
            CLUSTER,
            measures_loss=True,
        ),
        Scenario(
            "cluster_failover_replicated",
            "cluster_failover with --durability replicated: no acknowledged write lost",
            cluster_failover_replicated,
            dataclasses.replace(CLUSTER, durability="replicated"),
        ),
    )
)
QUICK = [name for name, s in SCENARIOS.items() if s.quick]
