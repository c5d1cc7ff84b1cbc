"""The gRPC layer: thin servicers over the store. Only `api`, `client` and `proto` import grpc."""
