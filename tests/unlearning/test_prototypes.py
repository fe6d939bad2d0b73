"""Prior prototypes (Eq. 2), neighbour classes and gamma (Eq. 3) on hand-made geometries."""

from __future__ import annotations

import math

import pytest
import torch

from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.prototypes import (
    class_prototypes,
    correction_factor,
    nearest_classes,
    neighbour_structure,
    prototype_mask,
)


def test_class_prototypes_by_hand() -> None:
    codes = torch.tensor([[0.5, 0.5], [-0.5, 0.5], [0.25, -0.5], [-1.0, -1.0]])
    labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]])
    # class 0: samples 0, 1 -> (0, 0.5); class 1: samples 1 (counted again) and 2 -> (-0.125, 0);
    # class 2: sample 3 -> (-1, -1)
    expected = torch.tensor([[0.0, 0.5], [-0.125, 0.0], [-1.0, -1.0]])
    assert torch.equal(class_prototypes(codes, labels), expected)
    assert torch.equal(class_prototypes(codes, labels.bool()), expected)


def test_class_without_samples_gets_nan_and_is_masked() -> None:
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    protos = class_prototypes(torch.tensor([[1.0], [3.0]]), labels)
    assert protos[0].tolist() == [2.0] and torch.isnan(protos[1]).all()
    assert prototype_mask(labels).tolist() == [True, False]


def test_prototype_input_errors() -> None:
    with pytest.raises(CrossforgetError, match="same N"):
        class_prototypes(torch.zeros(3, 2), torch.zeros(2, 4))
    with pytest.raises(CrossforgetError, match="multi-hot"):
        class_prototypes(torch.zeros(2, 2), torch.tensor([[2, 0], [0, 1]]))


def line(*xs: float) -> torch.Tensor:
    """Class prototypes on a line (second coordinate 0), so distances are |x_a - x_b|."""
    return torch.tensor([[x, 0.0] for x in xs])


# class:         0    1    2    3    4
LINE = line(0.0, 1.0, 2.0, 4.0, -3.0)


def test_single_forget_class_neighbours_and_gamma() -> None:
    info = neighbour_structure(LINE, [0], k=2)
    # distances from class 0: 1 -> 1, 2 -> 2, 3 -> 4, 4 -> 3; the two nearest are {1, 2}, the rest {3, 4}
    assert info.neighbours == [1, 2] and info.per_forget == {0: [1, 2]} and info.rest == [3, 4]
    assert info.mu_n == 1.5 and info.mu_rest == 3.5
    assert math.isclose(info.gamma, (3.5 / 1.5) ** 2)
    assert nearest_classes(LINE, [0], 2) == [1, 2]
    assert math.isclose(correction_factor(LINE, [0], 2), 49 / 9)


def test_multi_class_forgetting() -> None:
    info = neighbour_structure(LINE, [3, 0], k=1)
    # forget classes are never neighbours: 0 -> 1 (distance 1), 3 -> 2 (distance 2); outside both: {4}
    assert info.per_forget == {0: [1], 3: [2]} and info.neighbours == [1, 2] and info.rest == [4]
    assert info.mu_n == 1.5  # mean of 1 and 2
    # Per forget class, the remaining retained classes exclude only its own neighbours:
    # class 0 -> {2, 4}: (2 + 3) / 2 = 2.5; class 3 -> {1, 4}: (3 + 7) / 2 = 5; mu_rest = 3.75.
    assert info.mu_rest == 3.75
    assert math.isclose(info.gamma, 6.25)  # (3.75 / 1.5)^2; excluding the union {1, 2} would give 100/9


def test_given_neighbour_lists_match_k() -> None:
    info = neighbour_structure(LINE, [0, 3], k=1)
    assert correction_factor(LINE, [0, 3], info.per_forget) == info.gamma
    # hand-picked neighbours: 0 -> {4} (3), 3 -> {1} (3), mu_n = 3; remaining: 0 -> {1, 2}: 1.5,
    # 3 -> {2, 4}: (2 + 7) / 2 = 4.5, mu_rest = 3 -> gamma = 1
    assert math.isclose(correction_factor(LINE, [0, 3], {0: [4], 3: [1]}), 1.0)


def test_a_plain_neighbour_list_serves_a_single_forget_class() -> None:
    assert math.isclose(correction_factor(LINE, [0], [1, 2]), 49 / 9)
    assert math.isclose(correction_factor(LINE, [0], (2, 1)), correction_factor(LINE, [0], {0: [1, 2]}))
    with pytest.raises(CrossforgetError, match=r"2 forget classes give the neighbours as a mapping"):
        correction_factor(LINE, [0, 3], [1, 2])
    with pytest.raises(CrossforgetError, match=r"exactly the forget classes \[0, 3\] as keys, got \[0\]"):
        correction_factor(LINE, [0, 3], {0: [1]})


def test_ties_break_by_class_index_and_nan_classes_are_skipped() -> None:
    protos = line(0.0, 1.0, -1.0, 5.0, float("nan"))
    assert nearest_classes(protos, [0], 1) == [1]
    info = neighbour_structure(protos, [0], 2)
    assert info.neighbours == [1, 2] and info.rest == [3]  # class 4 has no prototype


@pytest.mark.parametrize(
    ("forget", "k", "message"),
    [
        ([0], 0, "must be >= 1"),
        ([0], 5, "only 4 retained classes"),
        ([0], 4, "every retained class is a neighbour"),
        ([], 1, "names no class"),
        ([7], 1, "out of range"),
    ],
)
def test_neighbour_errors(forget: list[int], k: int, message: str) -> None:
    with pytest.raises(CrossforgetError, match=message):
        neighbour_structure(LINE, forget, k)


def test_forget_class_without_prototype_and_zero_mu_n() -> None:
    with pytest.raises(CrossforgetError, match="no training samples"):
        nearest_classes(line(float("nan"), 1.0, 2.0), [0], 1)
    with pytest.raises(CrossforgetError, match="mu_n = 0"):
        correction_factor(line(0.0, 0.0, 2.0), [0], 1)
    with pytest.raises(CrossforgetError, match="retained classes with a prototype"):
        correction_factor(LINE, [0], {0: [3, 0]})
