"""Storage adapters of the costs service."""
