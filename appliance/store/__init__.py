"""The store: every task state change as one atomic Lua script call on Redis.

Only this package imports redis. See scripts.py (the loader) and store.py (one method per move).
"""

from appliance.store.store import Store, connect

__all__ = ["Store", "connect"]
