"""atp — a Redis-backed asynchronous task platform with a gRPC API.

`from appliance import Client, AsyncClient, Worker`: the SDK is loaded lazily on first use, so
`import appliance` (and every role that does not talk gRPC) stays light and imports no grpc.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.client import AsyncClient, Client
    from appliance.worker import Worker

__all__ = ["AsyncClient", "Client", "Worker"]

_LAZY = {
    "Client": "appliance.client",
    "AsyncClient": "appliance.client",
    "Worker": "appliance.worker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'appliance' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
