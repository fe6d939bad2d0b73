"""The built-in ``digits`` dataset: scikit-learn's bundled 8x8 digits, offline, upsampled and split."""

from __future__ import annotations

import argparse
import socket

import numpy as np
import pytest
from sklearn.datasets import load_digits as bundled

from crossforget.cli.table1 import data_options
from crossforget.core.errors import CrossforgetError
from crossforget.data.registry import dataset_names, load_single_label
from crossforget.data.single_label.digits import load_digits


@pytest.fixture(scope="module")
def raw():
    return bundled()


def test_shapes_classes_and_counts_per_class(raw):
    data = load_digits()
    assert data.name == "digits" and data.class_names == [str(d) for d in range(10)]
    assert len(data) == 1797 and np.array_equal(data.targets, raw.target)
    pixels = data.images.load(range(len(data)), 32)
    assert pixels.shape == (1797, 32, 32, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 0], pixels[..., 2])
    per_class = np.bincount(raw.target, minlength=10)
    test = np.bincount(data.targets[data.test], minlength=10)
    assert test.tolist() == [round(0.2 * n) for n in per_class]
    assert (np.bincount(data.targets[data.train], minlength=10) + test).tolist() == per_class.tolist()
    assert np.intersect1d(data.train, data.test).size == 0 and data.train.size + data.test.size == 1797


def test_grey_levels_are_scaled_to_bytes(raw):
    native = load_digits(image_size=8).images.load(range(len(raw.images)), 8)
    assert np.array_equal(native[..., 0], np.rint(raw.images * 255 / 16).astype(np.uint8))
    # upsampling keeps the picture: the 32 px image, averaged back over 4x4 blocks, is close to the original
    big = load_digits(image_size=32).images.load(range(20), 32)[..., 0].astype(float)
    pooled = big.reshape(20, 8, 4, 8, 4).mean(axis=(2, 4))
    assert np.abs(pooled - native[:20, ..., 0]).mean() < 20


def test_split_is_seeded():
    first, again, other = load_digits(), load_digits(), load_digits(split_seed=1)
    assert np.array_equal(first.test, again.test) and not np.array_equal(first.test, other.test)
    assert first.info["fingerprint"] == again.info["fingerprint"] != other.info["fingerprint"]
    assert np.array_equal(first.images.load([0, 5], 32), again.images.load([0, 5], 32))
    fewer = load_digits(test_fraction=0.5)
    assert fewer.test.size > first.test.size


def test_no_network_is_needed(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("digits tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert len(load_digits(image_size=16)) == 1797


def test_by_name_and_from_the_command_line():
    assert "digits" in dataset_names("single")
    assert load_single_label("digits", image_size=16).images.load([0], 16).shape == (1, 16, 16, 3)
    args = argparse.Namespace(
        data_option=None,
        dataset="digits",
        root=None,
        image_size=None,
        arch="resnet-small",
        test_fraction=0.3,
        forget=["3"],
    )
    assert data_options(args) == {"image_size": 32, "test_fraction": 0.3}
    with pytest.raises(CrossforgetError, match="drop --root"):
        data_options(argparse.Namespace(**{**vars(args), "root": "somewhere"}))


def test_bad_options_are_errors():
    with pytest.raises(CrossforgetError, match="image_size"):
        load_digits(image_size=4)
    with pytest.raises(CrossforgetError, match="split_seed"):
        load_digits(split_seed=-1)
    with pytest.raises(CrossforgetError, match="test fraction"):
        load_digits(test_fraction=1.0)
