"""data.scenes: see docs/architecture.md."""
