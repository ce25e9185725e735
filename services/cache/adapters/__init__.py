"""Storage adapters of the cache service."""
