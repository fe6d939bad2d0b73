"""Datasets, splits and forget requests."""
