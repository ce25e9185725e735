"""Store adapters of the router."""
