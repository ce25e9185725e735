"""The cache service: exact (and later semantic) answers without an upstream call."""
