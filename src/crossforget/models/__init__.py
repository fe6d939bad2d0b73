"""Hashing models: modality encoders, hash heads, and the factory that builds them from a config."""
