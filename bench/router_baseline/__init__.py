"""The router classifier as shipped before the learned model: the blind baseline."""
