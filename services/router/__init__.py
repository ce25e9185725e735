"""The router service: picks the model, deployment and lane of each request."""
