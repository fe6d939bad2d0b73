"""Density plots (Fig. 1): PCA against scikit-learn, groups by hand, KDE mass, the command on hashing and
classifier checkpoints, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.decomposition import PCA

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from crossforget.experiments.density import Representations, density_map, pca_2d, sample_groups
from tests.experiments.test_sweeps import assert_picture


def test_pca_matches_scikit_learn():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    ours, ratios = pca_2d(features)
    reference = PCA(n_components=2).fit(features)
    theirs = reference.transform(features)
    for column in range(2):  # axes agree up to sign
        sign = np.sign(ours[:, column] @ theirs[:, column])
        np.testing.assert_allclose(ours[:, column], sign * theirs[:, column], atol=1e-8)
    np.testing.assert_allclose(ratios, reference.explained_variance_ratio_, rtol=1e-10)
    again, _ = pca_2d(features[::-1])
    np.testing.assert_allclose(again[::-1], ours, atol=1e-8)  # the sign rule makes the picture stable


def test_groups_by_hand():
    labels = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 1, 1, 0], [1, 1, 0, 0]])
    # forget class 0, neighbour class 1: a forget label wins over a neighbour label
    assert sample_groups(labels, [0], [1]).tolist() == [0, 1, 2, 1, 0]


def _blobs() -> Representations:
    """Three classes far apart; class 1's prototype sits next to class 0's (the forget class)."""
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [10.0, 10.0, 0.0], [-10.0, 10.0, 0.0]])
    classes = np.repeat(np.arange(4), [30, 40, 50, 60])
    features = centres[classes] + 0.3 * rng.normal(size=(classes.size, 3))
    labels = np.eye(4, dtype=np.uint8)[classes]
    prototypes = torch.tensor(centres, dtype=torch.float32)
    return Representations(features, labels, prototypes, ["a", "b", "c", "d"], "blobs")


def test_density_map_groups_and_densities():
    result = density_map(_blobs(), forget=[0], k=1)
    assert result.info["neighbours"] == ["b"]
    assert result.info["samples"] == {"forget": 30, "neighbour": 40, "other": 110}
    xs, ys = result.grid_x, result.grid_y
    cell = (xs[1] - xs[0]) * (ys[1] - ys[0])
    for (
        group
    ) in result.groups:  # the grid's mass agrees with the exact integral of the same KDE over the grid
        exact = stats.gaussian_kde(group.points.T).integrate_box([xs[0], ys[0]], [xs[-1], ys[-1]])
        assert group.density.sum() * cell == pytest.approx(exact, rel=0.03)
    for group in result.groups[:2]:  # one blob each: nearly all mass inside the padded range
        assert group.density.sum() * cell > 0.95
    forget = result.groups[0]
    peak = np.unravel_index(forget.density.argmax(), forget.density.shape)
    centre = forget.points.mean(axis=0)
    assert abs(result.grid_x[peak[1]] - centre[0]) < 1.0 and abs(result.grid_y[peak[0]] - centre[1]) < 1.0
    assert "principal component 1" in result.axis_labels[0]


def test_density_map_caps_points_and_handles_tiny_groups():
    blobs = _blobs()
    blobs.labels[:28] = np.eye(4, dtype=np.uint8)[1]  # only two forget samples left: no KDE, points shown
    result = density_map(blobs, forget=[0], k=1, max_points=100, seed=3)
    assert sum(g.count for g in result.groups) == 100
    tiny = [g for g in result.groups if g.count < 3]
    assert all(g.density is None for g in tiny)
    with pytest.raises(CrossforgetError, match="lower k"):
        density_map(_blobs(), forget=[0], k=5)


def test_command_on_hashing_checkpoint(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "fig.png"
    assert (
        main(["plot", "density", "--checkpoint", str(tiny_checkpoint), "--forget", "dog", "--out", str(out)])
        == 0
    )
    assert_picture(out)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["kind"] == "density" and info["forget"] == ["dog"] and len(info["neighbours"]) == 3
    assert sum(info["samples"].values()) == 250  # every training item of the tiny split
    tsne = tmp_path / "tsne.png"
    argv = [
        "plot",
        "density",
        "--checkpoint",
        str(tiny_checkpoint),
        "--method",
        "tsne",
        "--modality",
        "text",
        "--max-points",
        "120",
        "--out",
        str(tsne),
    ]
    assert main(argv) == 0
    assert_picture(tsne)
    assert main(argv) == 2  # exists: --overwrite needed


CLASSIFIER_DATA = ["--data-option", "num_train=160", "--data-option", "num_test=80"]
CLASSIFIER_DATA += ["--data-option", "num_classes=8"]


@pytest.fixture(scope="module")
def classifier_checkpoint(tmp_path_factory) -> Path:
    """One tiny Original classifier trained by ``table1`` (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("classifier")
    cache = root / "cache"
    argv = ["table1", "--forget", "dog", *CLASSIFIER_DATA, "--epochs", "1", "--seeds", "0"]
    argv += ["--methods", "original", "--no-shadow", "--cache", str(cache), "--out", str(root / "t1")]
    assert main(argv) == 0
    (checkpoint,) = [p for p in cache.iterdir() if p.name.startswith("original")]
    return checkpoint


def test_command_on_classifier_checkpoint(tmp_path: Path, classifier_checkpoint: Path):
    out = tmp_path / "cls.png"
    argv = ["plot", "density", "--checkpoint", str(classifier_checkpoint), "--forget", "dog", "--k", "2"]
    assert main([*argv, *CLASSIFIER_DATA, "--out", str(out)]) == 0
    assert_picture(out)
    assert json.loads(out.with_suffix(".json").read_text())["samples"]["forget"] == 20  # 160 / 8 classes


def test_classifier_data_must_match(tmp_path: Path, capsys, classifier_checkpoint: Path):
    checkpoint = classifier_checkpoint
    wrong = [
        "--data-option",
        "num_train=80",
        "--data-option",
        "num_test=80",
        "--data-option",
        "num_classes=8",
    ]
    code = main(
        ["plot", "density", "--checkpoint", str(checkpoint), *wrong, "--out", str(tmp_path / "x.png")]
    )
    assert code == 2
    assert "fingerprint" in capsys.readouterr().err
