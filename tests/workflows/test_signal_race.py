"""A signal racing its timeout, at the advancer's own gap: the advancer reads the run (no signal
yet), the signal is kept before the deadline, and only then does the advancer judge the step.
The step must succeed: the answer depends on the signal's arrival, not on how long the look took
(docs/adr/0010). Before the fix the advancer judged with a fresh clock and timed the step out.
Real Redis; the gap is held open by hand (the signal sent from inside the advancer's read)."""

from __future__ import annotations

import asyncio

from appliance.config import Settings
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from appliance.workflows.advancer import Advancer, Tasks
from appliance.workflows.definitions import Step, Workflow
from appliance.workflows.model import RunRecord
from tests.conftest import on_both

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)

TIMEOUT_MS = 400
FLOW = Workflow("w", (Step("paid", "", signal="paid", timeout_ms=TIMEOUT_MS),))


class SignalInTheGap(Advancer):
    """Its next read returns the run as it was, then a signal is kept (before the deadline) and
    the clock moves past the deadline before the advancer goes on."""

    armed = False

    async def _read_with_tasks(self, run_id: str) -> tuple[RunRecord, Workflow, Tasks] | None:
        found = await super()._read_with_tasks(run_id)
        if self.armed and found is not None:
            self.armed = False
            due = found[0].step("paid").due_ms
            assert await self.workflows.signal_run(run_id, "paid", "money")
            now = await self.store.now_ms()
            assert now < due  # kept in time
            await asyncio.sleep((due - now + 20) / 1000)  # the look goes on past the deadline
        return found


async def test_a_signal_kept_between_the_advancers_read_and_its_judgement_wins(
    store: Store, settings: Settings
) -> None:
    wf = WorkflowStore(store)
    await wf.put_workflow("w", FLOW.to_json())
    await wf.start_run("r1", "w", 1, "", ["paid"])
    advancer = SignalInTheGap(store, settings)
    await advancer.advance("r1", await store.now_ms())  # the signal step begins waiting
    paid = (await wf.get_run("r1", ["paid"])).step("paid")
    assert paid.state == "SCHEDULED"
    advancer.armed = True
    await advancer.advance("r1", await store.now_ms())  # read, signal, deadline, judgement
    await advancer.advance("r1", await store.now_ms())  # the next look sees the signal
    run = await wf.get_run("r1", ["paid"])
    assert run.state == "SUCCEEDED", run
    assert run.step("paid").output == "money"
    assert run.step("paid").finished_ms <= run.step("paid").due_ms
