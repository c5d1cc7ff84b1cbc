"""The supervisor of `atp --role=...`: one parent process that runs each role as a fresh child.

`run(settings, roles, passthrough)` is the entry (arbiter.py); states.py, process.py,
embedded_redis.py and http.py are its parts. Nothing here imports redis or grpc.
"""

from __future__ import annotations

from appliance.supervisor.arbiter import run, self_command

__all__ = ["run", "self_command"]
