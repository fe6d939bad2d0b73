"""The classification task binding: optimisers of each fit, the task fields, every method."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import ResNetConfig, ResNetForImageClassification

from crossforget.core.errors import CrossforgetError
from crossforget.models.classifier import build_classifier, classifier_config
from crossforget.tasks.classification import training
from crossforget.tasks.classification.checkpoint import ClassifierCheckpoint
from crossforget.tasks.classification.evaluation import evaluate_classifier, predict
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import make_store
from crossforget.tasks.classification.task import classification_task
from crossforget.unlearning.methods import create_method, method_names, method_options

FAST = {"retrain": {"epochs": 1}, "finetune": {"epochs": 1}, "amnesiac": {"epochs": 1}}


def test_task_fits_with_the_reference_optimisers(tiny, monkeypatch):
    data, store, saved = tiny
    seen = []
    monkeypatch.setattr(
        training,
        "train_loop",
        lambda model, store, indices, recipe, seed, **kw: seen.append((recipe, kw.get("targets"))),
    )
    task = classification_task(saved, data, store, [data.class_index("dog")])
    task.fit(task.fresh_model(0), task.train_retain, 3, 0, fresh_loss=False, lr_scale=1.0)
    finetune = seen[-1][0]
    assert (
        finetune.optimiser,
        finetune.lr,
        finetune.momentum,
        finetune.weight_decay,
        finetune.schedule,
        finetune.epochs,
    ) == ("sgd", 0.02, 0.9, 5e-4, "constant", 3)
    task.fit(task.fresh_model(0), task.train_retain, 2, 0, fresh_loss=True, lr_scale=1.0)
    assert seen[-1][0] == ClassifierRecipe(epochs=2)
    labels = task.labels[task.train_forget]
    task.fit_relabelled(task.fresh_model(0), task.train_forget, labels, 3, 0, lr=1e-4, batch_size=128)
    recipe, targets = seen[-1]
    assert (recipe.optimiser, recipe.lr, recipe.batch_size, recipe.epochs) == ("adam", 1e-4, 128, 3)
    assert torch.equal(targets, labels.argmax(1))


def test_task_binding(tiny):
    data, store, saved = tiny
    dog = data.class_index("dog")
    task = classification_task(saved, data, store, [dog])
    assert set(data.targets[task.train_forget]) == {dog}
    assert dog not in set(data.targets[task.train_retain])
    assert task.train_forget.size + task.train_retain.size == data.train.size
    assert torch.equal(task.labels.argmax(1), torch.from_numpy(data.targets))
    assert torch.equal(task.prototypes("image"), saved.prototypes)
    batch = next(iter(task.batches(task.train_forget, 4)))
    assert batch["images"].shape == (4, 3, 32, 32) and batch["labels"].tolist() == [dog] * 4
    assert task.outputs(saved.model, batch).shape == (4, data.num_classes)
    with pytest.raises(CrossforgetError, match="nothing to forget"):
        classification_task(saved, data, store, [])


@pytest.mark.parametrize("name", method_names())
def test_every_method_on_a_classifier(name, tiny):
    data, store, saved = tiny
    task = classification_task(saved, data, store, [data.class_index("dog")])
    before = {k: v.clone() for k, v in saved.model.state_dict().items()}
    fields = method_options(name).__dataclass_fields__
    options = {k: v for k, v in FAST.get(name, {}).items() if k in fields}
    first = create_method(name, **options).unlearn(saved.model, task, seed=1)
    second = create_method(name, **options).unlearn(saved.model, task, seed=1)
    state = first.model.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in before.items()}
    assert all(torch.equal(saved.model.state_dict()[k], v) for k, v in before.items())
    assert all(torch.equal(state[k], second.model.state_dict()[k]) for k in state)
    assert first.timings["total"] >= 0
    assert predict(first.model, store, data.test).shape == (data.test.size, data.num_classes)
    assert not np.isnan(evaluate_classifier(first.model, store, data, task.forget_classes)["retain_acc"])


def test_bad_teachers_incompetent_teacher_is_random_even_with_a_pretrained_backbone(tiny, tmp_path):
    data, _, _ = tiny
    torch.manual_seed(12345)  # pretrained weights unlike any seeded random initialisation below
    source = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=5)
    )
    source.save_pretrained(tmp_path / "resnet")
    config = classifier_config("resnet-small", data.num_classes, 32, pretrained=tmp_path / "resnet")
    model, preprocessor = build_classifier(config)
    meta = {
        "model": config,
        "class_names": data.class_names,
        "training": {"recipe": ClassifierRecipe().to_dict()},
    }
    saved = ClassifierCheckpoint(model, preprocessor, meta)
    task = classification_task(saved, data, make_store(data, config), [data.class_index("dog")])
    stem = "net.resnet.embedder.embedder.convolution.weight"
    pretrained = source.state_dict()["resnet.embedder.embedder.convolution.weight"]
    assert torch.equal(task.fresh_model(0).state_dict()[stem], pretrained)  # Retrain starts pretrained
    assert not torch.equal(task.random_model(0).state_dict()[stem], pretrained)
    teachers = []

    def recording(seed: int):
        teachers.append(task.random_model(seed))
        return teachers[-1]

    create_method("bad_teacher").unlearn(model, dataclasses.replace(task, random_model=recording), seed=0)
    assert len(teachers) == 1 and not torch.equal(teachers[0].state_dict()[stem], pretrained)
