"""SingleLabelData: class lookup by name or alias, forget-class checks, split checks."""

from __future__ import annotations

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import SingleLabelData


def _container() -> SingleLabelData:
    return SingleLabelData(
        "toy",
        ["cat", "dog", "fox"],
        np.array([0, 1, 0, 2, 1, 0]),
        _Images(6),
        train=np.array([0, 1, 2, 4]),
        test=np.array([3, 5]),
        aliases={"puppy": "dog"},
    )


class _Images:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def load(self, indices, size):
        return np.zeros((len(indices), size, size, 3), np.uint8)


def test_class_lookup_and_forget_checks():
    data = _container()
    assert data.class_index("DOG") == 1 and data.class_index("puppy") == 1
    with pytest.raises(CrossforgetError, match="valid classes: cat, dog, fox"):
        data.class_index("wolf")
    assert data.class_indices(["dog", "puppy"]) == [1]
    with pytest.raises(CrossforgetError, match="no training image of fox"):
        data.class_indices(["fox"])
    with pytest.raises(CrossforgetError, match="every class"):
        data.class_indices(["cat", "dog", "fox"])
    assert data.one_hot().tolist()[3] == [0, 0, 1]
    with pytest.raises(CrossforgetError, match="overlap"):
        SingleLabelData(
            "toy", ["a", "b"], np.array([0, 1]), _Images(2), train=np.array([0, 1]), test=np.array([1])
        )
