"""`import appliance` stays light; the SDK names load on first use."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHECK = """
import sys
import appliance
assert "grpc" not in sys.modules, "import appliance pulled in grpc"
from appliance import AsyncClient, Client, Worker
assert "grpc" in sys.modules
assert (Client.__module__, AsyncClient.__module__, Worker.__module__) == (
    "appliance.client.sync", "appliance.client.aio", "appliance.worker.runtime")
"""


def test_lazy_exports() -> None:
    subprocess.run([sys.executable, "-c", CHECK], check=True, timeout=30)


def test_unknown_name_is_an_attribute_error() -> None:
    import appliance

    with pytest.raises(AttributeError, match="Nope"):
        appliance.Nope  # noqa: B018
