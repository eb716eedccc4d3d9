"""Frontends serve the current snapshot to clients; they never call AWS."""
