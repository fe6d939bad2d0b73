"""The tiny classifier the classification tests share (trained once per test module)."""

from __future__ import annotations

import pytest

from crossforget.data.scenes.single import generate_scenes_single
from crossforget.models.classifier import classifier_config
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import make_store
from crossforget.tasks.classification.training import train_classifier


def train_tiny(epochs: int) -> tuple:
    """8 classes x 20 training images at 32 px and a classifier trained on them for ``epochs``."""
    data = generate_scenes_single(num_train=160, num_test=80, image_size=32, num_classes=8, include=["dog"])
    config = classifier_config("resnet-small", data.num_classes, 32)
    store = make_store(data, config)
    saved = train_classifier(
        data, store, config, ClassifierRecipe(epochs=epochs), seed=0, show_progress=False
    )
    return data, store, saved


@pytest.fixture(scope="module")
def tiny():
    """The tiny classifier trained for 2 epochs."""
    return train_tiny(2)
