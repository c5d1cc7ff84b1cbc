"""The Python SDK: `Client` (blocking) and `AsyncClient` (asyncio) over the gRPC API.

Only this package and `appliance.api` import grpc; nothing here imports the store or redis.
"""

from appliance.client.aio import AsyncClient
from appliance.client.common import (
    DeadLetter,
    DeadLetterPage,
    RpcFailed,
    Stats,
    Tls,
    status_name,
)
from appliance.client.sync import Client
from appliance.client.workflows import Workflow

__all__ = [
    "AsyncClient",
    "Client",
    "DeadLetter",
    "DeadLetterPage",
    "RpcFailed",
    "Stats",
    "Tls",
    "Workflow",
    "status_name",
]
