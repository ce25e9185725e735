"""Adapters of the gateway's ports that are not downstream gRPC clients."""
