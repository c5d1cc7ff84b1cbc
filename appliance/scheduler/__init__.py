"""The scheduler: cron and fixed-interval schedules fired exactly once per tick by the one
scheduler process that holds the leader lease.

cron.py (pure next-fire math), definitions.py (the model, validation, the config section),
leader.py (the lease), registry.py (schedule management for the API and the config),
service.py (the role's loop), cli.py (`atp schedule ...`). Only the store imports redis and
only cli.py talks gRPC (through the generated stubs and the SDK's channel); nothing here
imports redis or grpc directly.
"""
