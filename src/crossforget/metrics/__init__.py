"""Retrieval metrics for hashing models."""

from crossforget.metrics.retrieval import hamming_distance, mean_average_precision, random_ranking_map

__all__ = ["hamming_distance", "mean_average_precision", "random_ranking_map"]
