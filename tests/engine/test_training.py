"""Training loop: schedule, learning, determinism."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from crossforget.data.container import ArrayImages, MultiModalData
from crossforget.engine.training import TrainingOptimisers, TrainingRecipe, train_model, warmup_cosine
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore, augment_images, augment_pixels, iterate_batches
from crossforget.models.tokenizer import WordTokenizer


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


@pytest.mark.parametrize("max_shift", [0, 2, 3])
def test_pixel_augmentation_gives_the_float_path_images_bit_for_bit(max_shift: int):
    # Flip and shift on uint8 pixels, gathered from the whole set, then normalised == normalise the
    # batch, then flip and shift the floats (the old path): same values, same random draws after.
    _, store, _ = _toy()
    items = torch.tensor([5, 0, 17, 17, 40, 3, 95])
    g_float, g_pixels = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    expected = augment_images(store.preprocessor.images(store.pixels[items]), g_float, max_shift)
    pixels = augment_pixels(store.pixels, g_pixels, max_shift, items=items)
    assert pixels.dtype == torch.uint8 and pixels.shape == (7, 16, 16, 3)
    assert torch.equal(store.preprocessor.images(pixels), expected)
    assert torch.equal(torch.rand(3, generator=g_float), torch.rand(3, generator=g_pixels))
    # a batch already gathered (a lazily decoded store) gives the same images
    again = augment_pixels(store.pixels[items], torch.Generator().manual_seed(7), max_shift)
    assert torch.equal(again, pixels)


def test_training_batches_equal_the_old_float_path_and_come_nchw():
    _, store, _ = _toy()

    class FloatOnly:  # the store without pixel augmentation: iterate_batches augments the floats
        def __init__(self, inner: TensorStore) -> None:
            self.inner, self.labels, self.num_captions = inner, inner.labels, inner.num_captions

        def batch(self, indices, caption=None):
            return self.inner.batch(indices, caption)

    def epoch(source: object) -> list[dict]:
        generator = torch.Generator().manual_seed(3)
        return list(
            iterate_batches(
                source,
                np.arange(96),
                32,
                shuffle=True,
                generator=generator,
                random_caption=True,
                augment=True,
            )
        )

    new, old = epoch(store), epoch(FloatOnly(store))
    assert len(new) == len(old) == 3
    for a, b in zip(new, old, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        # NCHW like the old path: channels-last training is thread-count sensitive (TensorStore.batch).
        assert a["images"].is_contiguous() and b["images"].is_contiguous()


def test_training_optimisers_are_the_recipe_update_up_to_rounding():
    # fused AdamW + foreach clip == the per-parameter AdamW and clip the recipe describes
    _, store, config = _toy()
    torch.manual_seed(0)
    model, _ = build_hasher(config)
    loss = DSPHLoss(3, 8)
    plain_model, plain_loss = copy.deepcopy(model), copy.deepcopy(loss)
    recipe = TrainingRecipe(batch_size=32, grad_clip=0.5)
    fast = TrainingOptimisers(model, loss, recipe)
    assert fast.model.defaults["fused"] is True
    plain = torch.optim.AdamW(
        plain_model.parameters(), lr=recipe.encoder_lr, betas=recipe.betas, eps=recipe.eps,
        weight_decay=recipe.weight_decay, foreach=False,
    )  # fmt: skip
    plain_proxies = torch.optim.SGD(
        plain_loss.parameters(), lr=recipe.proxy_lr, momentum=0.9, weight_decay=5e-4
    )
    model.train(), plain_model.train()
    batch = store.batch(torch.arange(32))
    for _ in range(3):
        fast.schedule(0.5)
        for group in plain.param_groups:
            group["lr"] = recipe.encoder_lr * 0.5
        fast.zero_grad()
        torch.manual_seed(1)
        loss(model, batch).backward()
        fast.step()
        plain.zero_grad(), plain_proxies.zero_grad()
        torch.manual_seed(1)  # the same dropout masks
        plain_loss(plain_model, batch).backward()
        torch.nn.utils.clip_grad_norm_(plain_model.parameters(), 0.5, foreach=False)
        plain.step(), plain_proxies.step()
    for (name, a), b in zip(model.state_dict().items(), plain_model.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    assert torch.allclose(loss.proxies, plain_loss.proxies, rtol=1e-4, atol=1e-6)
