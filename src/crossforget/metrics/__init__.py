"""Retrieval metrics for hashing models."""

from crossforget.metrics.retrieval import (
    hamming_distance,
    hamming_ranking,
    mean_average_precision,
    random_ranking_map,
)

__all__ = ["hamming_distance", "hamming_ranking", "mean_average_precision", "random_ranking_map"]
