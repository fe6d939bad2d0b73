"""data.single_label: see docs/architecture.md."""
