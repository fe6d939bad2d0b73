"""data.multilabel: see docs/architecture.md."""
