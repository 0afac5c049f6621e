"""The web console: server-rendered pages over the same services as the API (no logic of its own)."""
