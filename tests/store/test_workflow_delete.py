"""workflow_delete.lua: the name is gone from the list; its versions stay for runs in flight."""

from __future__ import annotations

import pytest

from appliance.errors import NotFound
from appliance.store import Store
from appliance.store.workflows import WorkflowStore
from tests.conftest import on_both

pytestmark = on_both  # every test here also on the Redis Cluster (ADR 0010)


async def test_delete_hides_the_name_and_keeps_the_versions(store: Store) -> None:
    wf = WorkflowStore(store)
    await wf.put_workflow("w", "[1]")
    await wf.delete_workflow("w")
    assert await wf.workflow_names() == {}
    with pytest.raises(NotFound):
        await wf.workflow("w")
    assert await wf.workflow("w", 1) == (1, "[1]")
    with pytest.raises(NotFound):
        await wf.delete_workflow("w")
