"""The gateway service: the front door that runs the whole request flow."""
