"""tasks.classification: see docs/architecture.md."""
