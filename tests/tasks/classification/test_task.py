"""Classifiers: the ResNet wrapper, pretrained folders, cross-entropy, checkpoints and the task binding."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import ResNetConfig, ResNetForImageClassification

from crossforget.core.checkpoint import Checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.data.scenes.single import generate_scenes_single
from crossforget.losses.classification import CrossEntropyLoss
from crossforget.models.classifier import build_classifier, classifier_config
from crossforget.tasks.classification import task as ct
from crossforget.unlearning.methods import create_method, method_names, method_options

FAST = {"retrain": {"epochs": 1}, "finetune": {"epochs": 1}, "amnesiac": {"epochs": 1}}


@pytest.fixture(scope="module")
def tiny():
    """8 classes x 20 training images at 32 px and a classifier trained on them for 2 epochs."""
    data = generate_scenes_single(num_train=160, num_test=80, image_size=32, num_classes=8, include=["dog"])
    config = classifier_config("resnet-small", data.num_classes, 32)
    store = ct.make_store(data, config)
    saved = ct.train_classifier(
        data, store, config, ct.ClassifierRecipe(epochs=2), seed=0, show_progress=False
    )
    return data, store, saved


def test_forward_is_the_head_on_the_penultimate_features():
    model, pre = build_classifier(classifier_config("resnet-small", 7, 32))
    images = torch.randn(3, 3, 32, 32)
    features = model.features(images)
    assert features.shape == (3, 128) and model.feature_dim == 128
    head = model.net.classifier[1]
    assert torch.allclose(model(images), features @ head.weight.T + head.bias, atol=1e-6)
    assert model(images).shape == (3, 7)
    assert pre.images(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 3, 32, 32)


def test_resnet50_is_the_default_config():
    config = classifier_config("resnet-50", 100)
    assert config["resnet"] == {} and config["image_size"] == 224
    assert ResNetConfig(**config["resnet"]).hidden_sizes == [256, 512, 1024, 2048]


def test_bad_configs_are_errors():
    with pytest.raises(CrossforgetError, match="resnet-small"):
        classifier_config("vgg", 10)
    with pytest.raises(CrossforgetError, match="2 classes"):
        classifier_config("resnet-small", 1)


def test_pretrained_weights_come_from_a_local_folder(tmp_path):
    source = ResNetForImageClassification(
        ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", num_labels=5)
    )
    source.save_pretrained(tmp_path / "resnet")
    config = classifier_config("resnet-small", 3, 32, pretrained=tmp_path / "resnet")
    assert config["resnet"]["hidden_sizes"] == [8, 16]
    model, _ = build_classifier(config)
    stem = "resnet.embedder.embedder.convolution.weight"
    assert torch.equal(model.net.state_dict()[stem], source.state_dict()[stem])
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)  # a new 3-class head
    bare, _ = build_classifier(config, load_pretrained=False)
    assert not torch.equal(bare.net.state_dict()[stem], source.state_dict()[stem])
    with pytest.raises(CrossforgetError, match="--pretrained"):
        classifier_config("resnet-50", 3, pretrained=tmp_path / "missing")


def test_cross_entropy_per_sample_equals_single_sample_batches():
    model, _ = build_classifier(classifier_config("resnet-small", 4, 32))
    batch = {"images": torch.randn(5, 3, 32, 32), "labels": torch.tensor([0, 1, 2, 3, 1])}
    loss = CrossEntropyLoss()
    per_sample = loss(model, batch, reduction="none")
    singles = [loss(model, {k: v[i : i + 1] for k, v in batch.items()}) for i in range(5)]
    assert torch.allclose(per_sample, torch.stack(singles), atol=1e-5)
    assert torch.allclose(loss(model, batch), F.cross_entropy(model(batch["images"]), batch["labels"]))
    with pytest.raises(CrossforgetError, match="class indices"):
        loss(model, {"images": batch["images"], "labels": torch.zeros(5, 4)})


def test_training_learns_and_prototypes_are_class_means(tiny):
    data, store, saved = tiny
    history = saved.config["training"]["loss_history"]
    assert history[-1] < history[0]
    features = ct.penultimate_features(saved.model, store, data.train)
    targets = data.targets[data.train]
    for cls in (0, 5):
        assert torch.allclose(
            saved.prototypes[cls], features[torch.from_numpy(targets == cls)].mean(0), atol=1e-5
        )


def test_a_few_epochs_fit_a_small_set():
    data = generate_scenes_single(num_train=40, num_test=8, image_size=32, num_classes=4)
    config = classifier_config("resnet-small", 4, 32)
    store = ct.make_store(data, config)
    saved = ct.train_classifier(
        data,
        store,
        config,
        ct.ClassifierRecipe(epochs=15, batch_size=8, augment=False),
        seed=0,
        show_progress=False,
    )
    logits = ct.predict(saved.model, store, data.train)
    assert (logits.argmax(1).numpy() == data.targets[data.train]).mean() >= 0.9


def test_checkpoint_round_trip(tiny, tmp_path):
    data, store, saved = tiny
    ct.attach_full_fisher(saved, store, data.train[:64])
    ct.save_classifier_checkpoint(tmp_path / "ck", saved)
    loaded = ct.load_classifier_checkpoint(tmp_path / "ck")
    assert loaded.config["kind"] == "classifier"
    assert torch.equal(ct.predict(loaded.model, store, data.test), ct.predict(saved.model, store, data.test))
    assert torch.equal(loaded.prototypes, saved.prototypes)
    assert set(loaded.fisher) == {n for n, _ in saved.model.named_parameters()}
    save_checkpoint(tmp_path / "hash", Checkpoint({"kind": "hashing"}, {"w": torch.zeros(1)}))
    with pytest.raises(CrossforgetError, match="not a classifier"):
        ct.load_classifier_checkpoint(tmp_path / "hash")


def test_cache_reuses_a_stored_checkpoint(tiny, tmp_path):
    data, store, saved = tiny
    calls = []

    def build():
        calls.append(1)
        return saved

    first, hit1 = ct.cached(tmp_path / "entry", build)
    second, hit2 = ct.cached(tmp_path / "entry", build)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert torch.equal(ct.predict(second.model, store, data.test), ct.predict(saved.model, store, data.test))
    assert ct.cache_key({"a": 1}) != ct.cache_key({"a": 2})


def test_task_fits_with_the_reference_optimisers(tiny, monkeypatch):
    data, store, saved = tiny
    seen = []
    monkeypatch.setattr(
        ct,
        "train_loop",
        lambda model, store, indices, recipe, seed, **kw: seen.append((recipe, kw.get("targets"))),
    )
    task = ct.classification_task(saved, data, store, [data.class_index("dog")])
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
    assert seen[-1][0] == ct.ClassifierRecipe(epochs=2)
    labels = task.labels[task.train_forget]
    task.fit_relabelled(task.fresh_model(0), task.train_forget, labels, 3, 0, lr=1e-4, batch_size=128)
    recipe, targets = seen[-1]
    assert (recipe.optimiser, recipe.lr, recipe.batch_size, recipe.epochs) == ("adam", 1e-4, 128, 3)
    assert torch.equal(targets, labels.argmax(1))


def test_task_binding(tiny):
    data, store, saved = tiny
    dog = data.class_index("dog")
    task = ct.classification_task(saved, data, store, [dog])
    assert set(data.targets[task.train_forget]) == {dog}
    assert dog not in set(data.targets[task.train_retain])
    assert task.train_forget.size + task.train_retain.size == data.train.size
    assert torch.equal(task.labels.argmax(1), torch.from_numpy(data.targets))
    assert torch.equal(task.prototypes("image"), saved.prototypes)
    batch = next(iter(task.batches(task.train_forget, 4)))
    assert batch["images"].shape == (4, 3, 32, 32) and batch["labels"].tolist() == [dog] * 4
    assert task.outputs(saved.model, batch).shape == (4, data.num_classes)
    with pytest.raises(CrossforgetError, match="nothing to forget"):
        ct.classification_task(saved, data, store, [])


@pytest.mark.parametrize("name", method_names())
def test_every_method_on_a_classifier(name, tiny):
    data, store, saved = tiny
    task = ct.classification_task(saved, data, store, [data.class_index("dog")])
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
    assert ct.predict(first.model, store, data.test).shape == (data.test.size, data.num_classes)
    assert not np.isnan(ct.evaluate_classifier(first.model, store, data, task.forget_classes)["retain_acc"])


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
        "training": {"recipe": ct.ClassifierRecipe().to_dict()},
    }
    saved = ct.ClassifierCheckpoint(model, preprocessor, meta)
    task = ct.classification_task(saved, data, ct.make_store(data, config), [data.class_index("dog")])
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
