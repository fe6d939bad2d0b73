"""Device resolution and placement, and background image decoding that never changes the batches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossforget.cli import main
from crossforget.core.device import autocast, module_device, resolve_device, to_device
from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, MultiModalData
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore, iterate_batches
from crossforget.models.tokenizer import WordTokenizer

CUDA = torch.cuda.is_available()


def test_auto_picks_what_torch_sees() -> None:
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    assert resolve_device(None) == resolve_device("auto")
    assert resolve_device("CPU") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.skipif(CUDA, reason="checks the error raised where no GPU is visible")
def test_cuda_without_gpu_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(CrossforgetError, match="sees no CUDA GPU; use --device cpu"):
        resolve_device("cuda")
    with pytest.raises(CrossforgetError, match="no CUDA"):
        resolve_device("cuda:1")
    code = main(
        [
            "train",
            "--data-option",
            "num_items=300",
            "--num-query",
            "50",
            "--num-train",
            "200",
            "--bits",
            "16",
            "--epochs",
            "1",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2 and "--device cpu" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_device_name() -> None:
    with pytest.raises(CrossforgetError, match="auto, cpu, cuda"):
        resolve_device("tpu")


def test_placement_helpers() -> None:
    batch = {"a": torch.ones(2), "b": torch.zeros(3, dtype=torch.long)}
    assert to_device(batch, None) is batch
    moved = to_device(batch, torch.device("cpu"))
    assert moved.keys() == batch.keys() and all(moved[k].device.type == "cpu" for k in moved)
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # no autocast off CUDA


def _file_dataset(folder: Path, count: int = 23) -> MultiModalData:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (20 + i, 30, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (folder / "broken.png").write_bytes(b"not an image")
    paths[5] = folder / "broken.png"
    labels = rng.integers(0, 2, (count, 3))
    labels[:, 0] = 1
    captions = [[f"item {i} red", f"item {i} blue"] for i in range(count)]
    return MultiModalData("files", ["a", "b", "c"], labels, captions, FileImages(paths))


def _store(data: MultiModalData, budget: int, workers: int) -> TensorStore:
    config = {
        "backbone": "small",
        "bits": 8,
        "image_size": 16,
        "tokenizer": WordTokenizer.build([c for caps in data.captions for c in caps]).to_config(),
    }
    _, preprocessor = build_hasher(config)
    return TensorStore(data, preprocessor, memory_budget=budget, num_workers=workers)


def _epoch(store: TensorStore, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return list(
        iterate_batches(
            store,
            np.arange(len(store)),
            5,
            shuffle=True,
            generator=generator,
            random_caption=True,
            augment=True,
        )
    )


def test_background_decoding_gives_the_same_batches(tmp_path: Path) -> None:
    data = _file_dataset(tmp_path)
    eager = _store(data, budget=1 << 30, workers=0)  # everything decoded up front, in the main thread
    assert eager.pixels is not None
    threaded_eager = _store(data, budget=1 << 30, workers=3)
    assert torch.equal(threaded_eager.pixels, eager.pixels)
    lazy = _store(data, budget=0, workers=3)  # decoded per batch by 3 threads, nothing cached
    assert lazy.pixels is None
    cached = _store(data, budget=16 * 16 * 3 * 10, workers=2)  # room for 10 decoded images
    for store in (lazy, cached):
        for seed in (0, 1):
            expected, actual = _epoch(eager, seed), _epoch(store, seed)
            assert len(actual) == len(expected) == 5
            for a, b in zip(actual, expected, strict=True):
                assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert len(cached._cache) == 10 and lazy._cache == {}
    assert data.images.failed == {5}


def test_abandoned_iteration_releases_the_decoder(tmp_path: Path) -> None:
    store = _store(_file_dataset(tmp_path), budget=0, workers=2)
    batches = iterate_batches(store, np.arange(len(store)), 4)
    first = next(batches)
    assert store._ahead is not None and first["images"].shape == (4, 3, 16, 16)
    batches.close()
    assert store._ahead is None
    # An iteration that does not follow the announced order still gets the right images.
    other = next(iterate_batches(store, np.array([7, 3]), 2))
    expected = store.preprocessor.images(torch.from_numpy(store.images.load([7, 3], 16)))
    assert torch.equal(other["images"], expected)
