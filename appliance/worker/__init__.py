"""The worker runtime: `Worker` runs handlers for topics, fed by a Work stream through the SDK.

Loaded lazily so `appliance.worker.<submodule>` (executors) can be imported on its own. Must
not import grpc, redis or the store directly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.worker.execution import Handler
    from appliance.worker.runtime import Worker

__all__ = ["Handler", "Worker"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("appliance.worker.runtime"), name)
    raise AttributeError(f"module 'appliance.worker' has no attribute {name!r}")
