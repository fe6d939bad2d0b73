"""crossforget: selective class unlearning for deep hashing cross-modal retrieval."""

__version__ = "0.1.0"
