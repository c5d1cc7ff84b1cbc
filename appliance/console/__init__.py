"""The web console (issue 17, ADR 0011): its own role, reading and acting through the SDK with
the viewer's token; served on the supervisor's http_addr under /console/ by a proxy.

Must not import redis, grpc or the store: everything goes through appliance.client.
"""
