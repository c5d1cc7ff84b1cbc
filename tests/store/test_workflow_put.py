"""workflow_put.lua: each put is the name's next version and the latest; versions never reused."""

from __future__ import annotations

from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from tests.conftest import on_both

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_versions_count_up_and_survive_a_delete(store: Store) -> None:
    wf = WorkflowStore(store)
    assert await wf.put_workflow("w", "[1]") == 1
    assert await wf.put_workflow("w", "[2]") == 2
    assert await wf.workflow("w") == (2, "[2]") and await wf.workflow("w", 1) == (1, "[1]")
    await wf.delete_workflow("w")
    assert await wf.put_workflow("w", "[3]") == 3
    assert await wf.workflow_names() == {"w": 3}
