"""The gRPC layer: thin servicers over the store. Only `api` and `client` import grpc."""
