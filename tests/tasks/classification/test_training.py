"""Classifier training: it learns, and prototypes are class means of the penultimate features."""

from __future__ import annotations

import torch

from crossforget.data.scenes.single import generate_scenes_single
from crossforget.models.classifier import classifier_config
from crossforget.tasks.classification.evaluation import penultimate_features, predict
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import make_store
from crossforget.tasks.classification.training import train_classifier


def test_training_learns_and_prototypes_are_class_means(tiny):
    data, store, saved = tiny
    history = saved.config["training"]["loss_history"]
    assert history[-1] < history[0]
    features = penultimate_features(saved.model, store, data.train)
    targets = data.targets[data.train]
    for cls in (0, 5):
        assert torch.allclose(
            saved.prototypes[cls], features[torch.from_numpy(targets == cls)].mean(0), atol=1e-5
        )


def test_a_few_epochs_fit_a_small_set():
    data = generate_scenes_single(num_train=40, num_test=8, image_size=32, num_classes=4)
    config = classifier_config("resnet-small", 4, 32)
    store = make_store(data, config)
    saved = train_classifier(
        data,
        store,
        config,
        ClassifierRecipe(epochs=15, batch_size=8, augment=False),
        seed=0,
        show_progress=False,
    )
    logits = predict(saved.model, store, data.train)
    assert (logits.argmax(1).numpy() == data.targets[data.train]).mean() >= 0.9
