"""The cache service: exact and verified semantic answers without an upstream call."""
