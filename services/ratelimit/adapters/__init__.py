"""Counter store adapters."""
