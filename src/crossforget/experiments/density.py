"""Fig. 1: how forget, neighbour and other retained samples overlap in a model's representation space.

The training samples' representations (real-valued hash codes, or a classifier's penultimate
features) are reduced to two dimensions (PCA by default, t-SNE on request) and each group gets a
2-D Gaussian kernel density. Groups follow PPP's partition: forget = samples carrying a forget label;
neighbour = other samples carrying one of the forget classes' k nearest classes by prototype
distance (Eq. 2, as PPP chooses them); other = the remaining retained samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from crossforget.core.checkpoint import read_config
from crossforget.core.errors import CrossforgetError
from crossforget.data.forget import ForgetRequest
from crossforget.data.registry import load_single_label
from crossforget.tasks.classification.checkpoint import load_classifier_checkpoint
from crossforget.tasks.classification.evaluation import penultimate_features
from crossforget.tasks.classification.store import make_store
from crossforget.tasks.classification.training import compute_prototypes as classification_prototypes
from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
from crossforget.tasks.hashing.evaluation import encode
from crossforget.tasks.hashing.evaluation_run import checkpoint_dirs
from crossforget.tasks.hashing.task import store_for
from crossforget.tasks.hashing.training import compute_prototypes, load_data
from crossforget.unlearning.prototypes import neighbour_structure

GROUPS = (("forget", "forget classes"), ("neighbour", "neighbour classes"), ("other", "other retained"))
REDUCTIONS = ("pca", "tsne")
MODALITIES = ("both", "image", "text")
GRID = 120
PAD = 0.1


@dataclass
class Representations:
    """Features of the training samples, their multi-hot labels and the prototypes that pick neighbours."""

    features: np.ndarray
    labels: np.ndarray
    prototypes: torch.Tensor
    class_names: list[str]
    description: str


@dataclass
class DensityGroup:
    key: str
    title: str
    points: np.ndarray
    density: np.ndarray | None = None
    marginal_x: np.ndarray | None = None
    marginal_y: np.ndarray | None = None

    @property
    def count(self) -> int:
        return int(self.points.shape[0])


@dataclass
class DensityResult:
    title: str
    axis_labels: tuple[str, str]
    groups: list[DensityGroup]
    grid_x: np.ndarray
    grid_y: np.ndarray
    info: dict = field(default_factory=dict)


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projection onto the two leading principal axes and their explained-variance ratios.

    Each axis's sign is fixed so that its largest loading is positive: the same data always gives
    the same picture.
    """
    if features.ndim != 2 or features.shape[0] < 3 or features.shape[1] < 2:
        raise CrossforgetError(
            f"PCA needs at least 3 samples with at least 2 features, got shape {features.shape}"
        )
    centred = features - features.mean(axis=0)
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
    axes = axes * signs[:, None]
    variance = singular**2
    total = variance.sum()
    ratios = variance[:2] / total if total > 0 else np.zeros(2)
    return centred @ axes.T, ratios


def tsne_2d(features: np.ndarray, seed: int) -> np.ndarray:
    """t-SNE (scikit-learn, PCA initialisation, seeded); perplexity shrinks for small sets."""
    from sklearn.manifold import TSNE

    n = features.shape[0]
    if n < 5:
        raise CrossforgetError(f"t-SNE needs at least 5 samples, got {n}; use --method pca")
    perplexity = float(min(30.0, (n - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def sample_groups(labels: np.ndarray, forget: list[int], neighbours: list[int]) -> np.ndarray:
    """0 forget, 1 neighbour, 2 other retained, per sample (a forget label wins over a neighbour label)."""
    has = labels.astype(bool)
    groups = np.full(labels.shape[0], 2, dtype=np.int64)
    groups[has[:, neighbours].any(axis=1)] = 1
    groups[has[:, forget].any(axis=1)] = 0
    return groups


def _kde(
    points: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Density on the grid and both marginals, or None where a KDE is undefined (few or collinear points)."""
    if points.shape[0] < 3:
        return None
    try:
        joint = stats.gaussian_kde(points.T)
        gx, gy = np.meshgrid(xs, ys)
        density = joint(np.vstack([gx.ravel(), gy.ravel()])).reshape(gy.shape)
        return density, stats.gaussian_kde(points[:, 0])(xs), stats.gaussian_kde(points[:, 1])(ys)
    except (np.linalg.LinAlgError, ValueError):
        return None


def density_map(
    representations: Representations,
    forget: list[int],
    k: int,
    method: str = "pca",
    seed: int = 0,
    max_points: int = 4000,
) -> DensityResult:
    """Reduce, group and estimate the densities; ``max_points`` caps a seeded sample of the samples."""
    if method not in REDUCTIONS:
        raise CrossforgetError(f"unknown reduction {method!r}; choose one of {', '.join(REDUCTIONS)}")
    if max_points < 3:
        raise CrossforgetError(f"--max-points must be at least 3, got {max_points}")
    info = neighbour_structure(representations.prototypes, forget, k)
    groups = sample_groups(representations.labels, forget, info.neighbours)
    chosen = np.arange(groups.size)
    if groups.size > max_points:
        chosen = np.sort(np.random.default_rng(seed).choice(groups.size, size=max_points, replace=False))
    features = representations.features[chosen].astype(np.float64)
    groups = groups[chosen]
    extra: dict = {}
    if method == "pca":
        coords, ratios = pca_2d(features)
        extra["explained_variance_ratio"] = [float(r) for r in ratios]
        axis_labels = (
            f"principal component 1 ({100 * ratios[0]:.0f}% of variance)",
            f"principal component 2 ({100 * ratios[1]:.0f}% of variance)",
        )
    else:
        coords = tsne_2d(features, seed)
        axis_labels = ("t-SNE dimension 1", "t-SNE dimension 2")
    xs, ys, result_groups = _grouped_densities(coords, groups)
    names = representations.class_names
    title = (
        f"{representations.description}, {method.upper()}\n"
        f"forget: {', '.join(names[c] for c in forget)}; "
        f"neighbours (k={k}): {', '.join(names[c] for c in info.neighbours)}"
    )
    details = {
        "forget": [names[c] for c in forget],
        "neighbours": [names[c] for c in info.neighbours],
        "k": k,
        "gamma": info.gamma,
        "reduction": method,
        "seed": seed,
        "samples": {key: int((groups == i).sum()) for i, (key, _) in enumerate(GROUPS)},
        **extra,
    }
    return DensityResult(title, axis_labels, result_groups, xs, ys, details)


def _grouped_densities(
    coords: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[DensityGroup]]:
    """The padded evaluation grid and each group's points with its density (None below three points)."""
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    xs = np.linspace(low[0] - PAD * span[0], high[0] + PAD * span[0], GRID)
    ys = np.linspace(low[1] - PAD * span[1], high[1] + PAD * span[1], GRID)
    result_groups = []
    for index, (key, title) in enumerate(GROUPS):
        points = coords[groups == index]
        group = DensityGroup(key, title, points)
        estimate = _kde(points, xs, ys)
        if estimate is not None:
            group.density, group.marginal_x, group.marginal_y = estimate
        result_groups.append(group)
    return xs, ys, result_groups


def checkpoint_kind(path: Path) -> str:
    """ "classifier" for a classifier checkpoint folder, else "hashing" (a checkpoint or a bits* folder)."""
    config = path / "config.json"
    if config.is_file():
        return str(read_config(config).get("kind", "hashing"))
    return "hashing"


def hashing_representations(
    path: Path, bits: int | None, modality: str, device: torch.device | None = None
) -> Representations:
    """Real-valued codes of the training split; ``both`` averages an item's image and text codes, as the
    default prototypes average the two modalities' prototypes."""
    if modality not in MODALITIES:
        raise CrossforgetError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    dirs = checkpoint_dirs(path)
    saved = [load_hashing_checkpoint(d, device) for d in dirs]
    if bits is not None:
        matching = [s for s in saved if s.bits == bits]
        if not matching:
            raise CrossforgetError(
                f"{path} holds no {bits}-bit checkpoint; it holds {[s.bits for s in saved]}"
            )
        saved = matching
    chosen = saved[0]
    loaded = load_data(chosen.dataset_spec, device)
    loaded.check(chosen.config, path)
    store = store_for(chosen, loaded)
    train = loaded.split.train
    codes = encode(chosen.model, store, train)
    prototypes = chosen.prototypes or compute_prototypes(chosen.model, store, train)
    if modality == "both":
        features = ((codes.image + codes.text) / 2).numpy()
        protos = (prototypes["image"] + prototypes["text"]) / 2
    else:
        features = getattr(codes, modality).numpy()
        protos = prototypes[modality]
    description = f"hashing {chosen.dataset_spec.name}, {chosen.bits} bits, {modality} codes"
    return Representations(
        features, loaded.data.labels[train], protos.cpu(), list(chosen.class_names), description
    )


def classifier_representations(
    path: Path, dataset_options: dict, forget: Sequence[str] = ()
) -> Representations:
    """Penultimate features of the training images; the data must be the one the checkpoint was trained on.

    Checkpoints record the dataset's name and fingerprint, not the loader options. ``table1`` keeps the
    forget classes when a loader samples classes (``include``), so that is tried when the options alone
    load other data.
    """
    saved = load_classifier_checkpoint(path)
    recorded = saved.config.get("dataset", {})
    expected = recorded.get("fingerprint")
    data = load_single_label(recorded["name"], **dataset_options)
    if expected and data.info.get("fingerprint") != expected and forget and "include" not in dataset_options:
        try:
            retry = load_single_label(recorded["name"], **dataset_options, include=list(forget))
        except CrossforgetError:  # the loader samples no classes, so it takes no include
            retry = data
        data = retry if retry.info.get("fingerprint") == expected else data
    if expected and data.info.get("fingerprint") != expected:
        raise CrossforgetError(
            f"{path} was trained on other {recorded['name']} data than these options load (fingerprint "
            f"{expected} vs {data.info.get('fingerprint')}); pass the --root/--data-option used at training"
        )
    store = make_store(data, saved.config["model"])
    features = penultimate_features(saved.model, store, data.train).numpy()
    prototypes = saved.prototypes
    if prototypes is None:
        prototypes = classification_prototypes(saved.model, store, data.train)
    description = f"classifier {data.name}, penultimate features"
    return Representations(
        features, data.one_hot()[data.train], prototypes, list(data.class_names), description
    )


def forget_indices(class_names: list[str], forget: list[str]) -> list[int]:
    """Class indices of the forget names (unknown names list the valid ones)."""
    return ForgetRequest(forget).indices(class_names)


def density_summary(result: DensityResult, checkpoint: Path) -> dict:
    """What the figure shows, for the JSON written beside it (found by ``crossforget report``)."""
    return {"kind": "density", "checkpoint": str(checkpoint), "title": result.title, **result.info}
