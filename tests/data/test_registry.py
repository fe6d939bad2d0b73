"""The dataset registry: discovery, kinds, errors, and adding a dataset with one file (the docs' example)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import crossforget.data.multilabel
import crossforget.data.single_label
from crossforget.core.errors import CrossforgetError
from crossforget.data import registry
from crossforget.data.registry import DatasetSpec, dataset_names, load_dataset, load_single_label
from tests.reliability import run_cli

CONTRIBUTING = Path(__file__).resolve().parents[2] / "docs" / "contributing.md"
TOY_SINGLE = """
import numpy as np

from crossforget.data.container import ArrayImages, SingleLabelData
from crossforget.data.registry import register_dataset


@register_dataset("toy-single", "single", about="two grey levels")
def load_toy_single(image_size: int = 8) -> SingleLabelData:
    targets = np.arange(8) % 2
    images = np.repeat(targets * 255, 3 * image_size**2).reshape(8, image_size, image_size, 3)
    return SingleLabelData("toy-single", ["dark", "light"], targets, ArrayImages(images.astype(np.uint8)),
                           train=np.arange(6), test=np.arange(6, 8))
"""


def test_every_builtin_dataset_is_registered_with_its_kind():
    assert dataset_names("multilabel") == ["coco", "jsonl", "mirflickr", "nuswide", "scenes"]
    assert dataset_names("single") == ["deepfashion", "digits", "imagefolder", "imagenet100", "scenes-single"]
    assert registry.dataset_entry("scenes", "multilabel").defaults == {
        "num_items": 10_000,
        "image_size": 48,
        "seed": 0,
    }
    assert registry.dataset_entry("imagefolder", "single").options[0] == "root"


def test_unknown_dataset_and_wrong_kind_name_the_choices():
    with pytest.raises(CrossforgetError, match="unknown dataset 'nosuch'; valid datasets: coco, jsonl"):
        load_dataset(DatasetSpec("nosuch"))
    with pytest.raises(CrossforgetError, match="scenes-single is a classification .* valid datasets: coco"):
        load_dataset(DatasetSpec("scenes-single"))
    with pytest.raises(CrossforgetError, match="scenes is a retrieval .* choose one of deepfashion"):
        load_single_label("scenes")
    with pytest.raises(CrossforgetError, match="needs --data-root"):
        load_dataset(DatasetSpec("coco"))


def test_load_by_name_checks_options():
    with pytest.raises(CrossforgetError, match="valid: "):
        load_single_label("scenes-single", num_items=5)
    with pytest.raises(CrossforgetError, match="choose one of"):
        load_single_label("cifar")


@pytest.fixture
def dataset_file(tmp_path, monkeypatch):
    """Write a module into a data subpackage (via a temporary folder on its path) and rediscover."""
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
    added = []

    def add(package, name: str, code: str) -> None:
        folder = tmp_path / package.__name__.rsplit(".", 1)[-1]
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(code, encoding="utf-8")
        monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
        added.append(f"{package.__name__}.{name}")
        registry._discover.cache_clear()

    yield add
    for module in added:
        sys.modules.pop(module, None)
    registry._discover.cache_clear()


def test_the_contributing_example_adds_a_dataset_with_one_file(dataset_file, capsys):
    example = r"```python\n# src/crossforget/data/multilabel/toy.py\n(.*?)```"
    code = re.search(example, CONTRIBUTING.read_text(encoding="utf-8"), re.S)
    dataset_file(crossforget.data.multilabel, "toy", code.group(1))
    assert run_cli(["data", "info", "--help"]) == 0
    assert "toy (random colour squares)" in " ".join(capsys.readouterr().out.split())
    argv = ["data", "info", "--dataset", "toy", "--num-query", "8", "--num-train", "32"]
    assert run_cli([*argv, "--data-option", "num_items=48"]) == 0
    assert "toy: 48 items, 3 classes" in capsys.readouterr().out
    assert run_cli([*argv, "--data-option", "size=5"]) == 2
    assert "valid: num_items, seed" in capsys.readouterr().err
    data, split = load_dataset(DatasetSpec("toy", num_query=8, num_train=32))
    assert len(data) == 64 and split.database.size == 56
    assert "toy" not in dataset_names("single")


def test_a_single_label_file_appears_in_table1(dataset_file, capsys):
    dataset_file(crossforget.data.single_label, "toy_single", TOY_SINGLE)
    assert run_cli(["table1", "--help"]) == 0
    assert "toy-single (two grey levels)" in " ".join(capsys.readouterr().out.split())
    data = load_single_label("toy-single", image_size=4)
    assert data.num_classes == 2 and np.array_equal(data.images.load([1], 4), np.full((1, 4, 4, 3), 255))
