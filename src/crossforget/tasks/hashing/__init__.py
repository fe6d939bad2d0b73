"""tasks.hashing: see docs/architecture.md."""
