"""scenes-single: seeded, balanced, split into separate streams; class subsets keep the named class."""

from __future__ import annotations

import numpy as np
import pytest

from crossforget.core.errors import CrossforgetError
from crossforget.data.scenes.single import generate_scenes_single
from crossforget.data.scenes.vocabulary import CLASS_NAMES


def test_scenes_single_is_seeded_balanced_and_split():
    data = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=3)
    again = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=3)
    other = generate_scenes_single(num_train=132, num_test=66, image_size=32, seed=4)
    pixels = data.images.load(range(len(data)), 32)
    assert np.array_equal(pixels, again.images.load(range(len(data)), 32))
    assert not np.array_equal(pixels, other.images.load(range(len(data)), 32))
    assert data.class_names == list(CLASS_NAMES) and data.num_classes == 66
    assert np.bincount(data.targets[data.train]).tolist() == [2] * 66
    assert np.bincount(data.targets[data.test]).tolist() == [1] * 66
    assert np.intersect1d(data.train, data.test).size == 0
    # a train image does not depend on how many test images there are
    fewer = generate_scenes_single(num_train=132, num_test=5, image_size=32, seed=3)
    assert np.array_equal(fewer.images.load(range(132), 32), pixels[:132])
    assert data.info["fingerprint"] != other.info["fingerprint"]


def test_scenes_single_subset_keeps_the_included_class():
    data = generate_scenes_single(num_train=20, num_test=10, num_classes=5, include=["dog"])
    assert len(data.class_names) == 5 and "dog" in data.class_names
    assert data.class_names[:4] == list(CLASS_NAMES[:4])
    with pytest.raises(CrossforgetError, match="valid classes"):
        generate_scenes_single(num_train=20, num_test=10, num_classes=5, include=["unicorn"])
    with pytest.raises(CrossforgetError, match="image_size"):
        generate_scenes_single(num_train=20, num_test=10, image_size=40)
    with pytest.raises(CrossforgetError, match="num_train"):
        generate_scenes_single(num_train=0)
