"""atp chaos harness: real processes behind the real toxiproxy, a recorded history and a checker.

Uses only atp's public surface (the gRPC API and the SDK); never appliance internals.
"""
