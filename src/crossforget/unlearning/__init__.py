"""Unlearning: the tensor-level maths (Fisher, prototypes, SSD and PPP rules) and the methods built on it."""

from crossforget.unlearning.fisher import aligned_parameters, batch_size, check_fisher, diagonal_fisher
from crossforget.unlearning.ppp import dampening_factor, partition, ppp_dampen, region_sizes
from crossforget.unlearning.prototypes import (
    NeighbourInfo,
    class_prototypes,
    correction_factor,
    nearest_classes,
    neighbour_structure,
    prototype_mask,
)
from crossforget.unlearning.ssd import ssd_dampen

__all__ = [
    "NeighbourInfo",
    "aligned_parameters",
    "batch_size",
    "check_fisher",
    "class_prototypes",
    "correction_factor",
    "dampening_factor",
    "diagonal_fisher",
    "nearest_classes",
    "neighbour_structure",
    "partition",
    "ppp_dampen",
    "prototype_mask",
    "region_sizes",
    "ssd_dampen",
]
