"""Training loop: schedule, learning, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crossforget.data.container import ArrayImages, MultiModalData
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore, augment_images
from crossforget.models.tokenizer import WordTokenizer
from crossforget.training import TrainingRecipe, train_model, warmup_cosine


def test_warmup_cosine_schedule_by_hand():
    # 10 steps, 2 warm-up: 0.5, 1.0, then cosine from 1 towards 0 over the remaining 8 steps.
    assert warmup_cosine(0, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine(1, 10, 2) == pytest.approx(1.0)
    assert warmup_cosine(2, 10, 2) == pytest.approx(1.0)
    assert warmup_cosine(6, 10, 2) == pytest.approx(0.5)
    assert warmup_cosine(10, 10, 2) == pytest.approx(0.0, abs=1e-12)


def _toy() -> tuple[MultiModalData, TensorStore, dict]:
    rng = np.random.default_rng(0)
    labels = np.zeros((96, 3), dtype=np.uint8)
    labels[np.arange(96), np.arange(96) % 3] = 1
    images = np.zeros((96, 16, 16, 3), dtype=np.uint8)
    for c in range(3):  # each class has its own colour channel, plus noise
        images[labels[:, c] == 1, :, :, c] = 200
    images = np.clip(images + rng.integers(0, 40, images.shape), 0, 255).astype(np.uint8)
    names = ["red", "green", "blue"]
    captions = [[f"a {names[int(np.argmax(row))]} picture"] for row in labels]
    data = MultiModalData("toy", names, labels, captions, ArrayImages(images))
    config = {
        "backbone": "small",
        "bits": 8,
        "image_size": 16,
        "cnn_width": 8,
        "feature_dim": 16,
        "embed_dim": 8,
        "tokenizer": WordTokenizer.build(c[0] for c in captions).to_config(),
    }
    _, pre = build_hasher(config)
    return data, TensorStore(data, pre), config


def _train(seed: int, epochs: int = 4) -> tuple[torch.nn.Module, list[float]]:
    _, store, config = _toy()
    torch.manual_seed(seed)
    model, _ = build_hasher(config)
    loss = DSPHLoss(3, 8)
    history = train_model(
        model,
        loss,
        store,
        np.arange(96),
        TrainingRecipe(epochs=epochs, batch_size=32),
        seed,
        show_progress=False,
    )
    return model, history


def test_training_reduces_the_loss_and_leaves_the_model_in_eval_mode():
    model, history = _train(0, epochs=6)
    assert history[-1] < 0.8 * history[0]
    assert not model.training


def test_same_seed_gives_identical_weights_and_other_seed_differs():
    a, _ = _train(1, epochs=1)
    b, _ = _train(1, epochs=1)
    c, _ = _train(2, epochs=1)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert any(
        not torch.equal(pa, pc)
        for pa, pc in zip(a.state_dict().values(), c.state_dict().values(), strict=True)
    )


def test_augmentation_keeps_shape_and_is_seeded():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = augment_images(images, g1, 2), augment_images(images, g2, 2)
    assert a.shape == images.shape
    assert torch.equal(a, b)
    # every output pixel is a value of the (reflect-padded, possibly flipped) source image of its sample
    for i in range(2):
        assert set(a[i].unique().tolist()) <= set(images[i].unique().tolist())
