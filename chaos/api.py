"""What the harness asks a running atp, through its public API only: the SDK's Client for the
queue, and the generated stubs of proto/queue.proto for ScheduleService (the SDK has no
schedule calls yet). Reads the final state the checker needs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import grpc

from appliance import Client
from appliance.errors import AtpError, NotFound
from appliance.proto import queue_pb2 as pb  # the public proto's generated code
from appliance.proto import queue_pb2_grpc as pb_grpc
from chaos.checker import MISSING, FinalState, FinalTask, ScheduleFinal, TopicCounts
from chaos.runcheck import FinalRun, FinalStep


class Api:
    def __init__(self, address: str, timeout: float = 5.0) -> None:
        self.address = address
        self.timeout = timeout
        self.client = Client(address, timeout=timeout)
        self._channel = grpc.insecure_channel(address)
        self.schedules = pb_grpc.ScheduleServiceStub(self._channel)

    def close(self) -> None:
        self.client.close()
        self._channel.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ready(self) -> bool:
        """The server answers and reaches Redis."""
        try:
            self.client.stats()
        except AtpError:
            return False
        return True

    def counts(self, topics: Iterable[str]) -> dict[str, TopicCounts]:
        stats = self.client.stats(list(topics))
        return {s.topic: TopicCounts(s.pending, s.running, s.dead) for s in stats.topics}

    def drained(self, topics: Iterable[str]) -> bool:
        """Nothing pending or running in these topics (an unreachable server: not drained)."""
        try:
            counts = self.counts(topics)
        except AtpError:
            return False
        return all(c.pending == 0 and c.running == 0 for c in counts.values())

    def task(self, task_id: str, topics: Iterable[str] = ()) -> FinalTask:
        """GetTask by id alone; when that finds nothing, with each of `topics` (a task whose id
        index was lost is still there: `by_id` False)."""
        for topic in ("", *topics):
            try:
                t = self.client.get_task(task_id, topic)
            except NotFound:
                continue
            return FinalTask(
                str(t.state), t.attempt, t.max_retries, t.topic, t.last_error[:200], not topic
            )
        return FinalTask(MISSING)

    def dead_letters(self, topic: str) -> list[str]:
        ids: list[str] = []
        cursor = ""
        while True:
            page = self.client.list_dead_letters(topic, limit=1000, cursor=cursor)
            ids += [d.task.id for d in page.letters]
            cursor = page.next_cursor
            if not cursor:
                return ids

    def final_state(
        self, task_ids: Iterable[str], topics: Iterable[str], schedules: dict[str, int]
    ) -> FinalState:
        """Every task named (MISSING when GetTask finds none), each topic's dead letters and
        counts, and each schedule (id -> creation time, ms) with the tasks of its ticks."""
        topics = list(topics)
        tasks = {task_id: self.task(task_id, topics) for task_id in sorted(set(task_ids))}
        finals = [self.schedule_final(s) for s in schedules]
        for s in finals:
            for task_id in tick_ids(s, schedules[s.id]):
                found = tasks.get(task_id) or self.task(task_id)
                if found.state != MISSING:
                    tasks[task_id] = found
        return FinalState(
            tasks=tasks,
            dead_letters={topic: self.dead_letters(topic) for topic in topics},
            stats=self.counts(topics),
            schedules=finals,
        )

    # -- workflow runs (the SDK's WorkflowService calls) ----------------------------------

    def run(self, run_id: str) -> FinalRun:
        """A run's GetRun (state MISSING when there is none)."""
        try:
            r = self.client.get_run(run_id)
        except NotFound:
            return FinalRun(run_id, "", MISSING)
        steps = [
            FinalStep(
                s.name,
                pb.StepState.Name(s.state).removeprefix("STEP_"),
                s.task_id,
                s.attempts,
                s.output,
                s.error[:200],
                s.started_ms,
                s.finished_ms,
                s.due_ms,
            )
            for s in r.steps
        ]
        state = pb.RunState.Name(r.state).removeprefix("RUN_")
        return FinalRun(r.id, r.workflow, state, steps, r.created_ms, r.finished_ms, r.error)

    def runs(self, run_ids: Iterable[str]) -> dict[str, FinalRun]:
        return {run_id: self.run(run_id) for run_id in sorted(run_ids)}

    def unsettled(self, run_ids: Iterable[str]) -> list[str]:
        """The runs not finished yet, or with a step outcome not recorded yet (an unreachable
        server: all of them)."""
        try:
            return [r for r, fr in self.runs(run_ids).items() if not fr.settled]
        except AtpError:
            return list(run_ids)

    # -- schedules (ScheduleService over gRPC) ---------------------------------------------

    def _call(self, rpc: str, request: Any) -> Any:
        return getattr(self.schedules, rpc)(request, timeout=self.timeout)

    def create_interval_schedule(
        self, schedule_id: str, topic: str, interval_ms: int, payload: str
    ) -> None:
        schedule = pb.Schedule(
            id=schedule_id, topic=topic, payload=payload, interval_ms=interval_ms, max_retries=5
        )
        self._call("CreateSchedule", pb.CreateScheduleRequest(schedule=schedule))

    def pause_schedule(self, schedule_id: str) -> None:
        self._call("PauseSchedule", pb.ScheduleIdRequest(id=schedule_id))

    def schedule_final(self, schedule_id: str) -> ScheduleFinal:
        s = self._call("GetSchedule", pb.ScheduleIdRequest(id=schedule_id))
        return ScheduleFinal(s.id, s.topic, s.interval_ms, s.last_fire_time_ms)

    def leader_pid(self) -> int | None:
        """The pid in the leading scheduler's holder id (`host/pid/random`), if one leads."""
        with contextlib.suppress(grpc.RpcError):
            status = self._call("GetSchedulerStatus", pb.GetSchedulerStatusRequest())
            parts = status.leader_id.split("/")
            if len(parts) == 3 and parts[1].isdigit():
                return int(parts[1])
        return None


def tick_ids(schedule: ScheduleFinal, created_ms: int) -> list[str]:
    """The ids of an interval schedule's tick tasks from its creation to its last fire: the
    scheduler's idempotency key `sched:<schedule id>:<tick ms>` (ticks on multiples of the
    interval, as no start_ms is set). Found by GetTask even when no worker ran them (canceled
    by the pause, or dead)."""
    step = schedule.interval_ms
    if not step or not schedule.last_fire_ms:
        return []
    first = -(-created_ms // step) * step
    return [f"sched:{schedule.id}:{t}" for t in range(first, schedule.last_fire_ms + 1, step)]


@contextlib.contextmanager
def connect(address: str) -> Iterator[Api]:
    api = Api(address)
    try:
        yield api
    finally:
        api.close()
