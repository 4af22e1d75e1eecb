"""Model access: request and event types, the backend contract, backend kinds and layers."""
