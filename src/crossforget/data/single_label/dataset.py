"""Single-label image data for the classification track, and the built-in ``scenes-single`` generator.

``SingleLabelData`` is what every classification loader returns: images, one class per image and a
train/test split. ``scenes-single`` draws one emoji object per image onto the backgrounds of the
``scenes`` dataset (same sprites, same scene types, a scene that suits the object), so Table 1 runs
offline in minutes.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages, ImageSource
from crossforget.data.scenes import generate as scenes
from crossforget.data.scenes.vocabulary import CLASS_NAMES, SCENES

SCENES_SINGLE_VERSION = 1


@dataclass
class SingleLabelData:
    """Images with one class each; ``train`` and ``test`` index into them.

    ``aliases`` maps other accepted spellings (lower case: synonyms, WordNet ids) to a class name.
    ``info`` records how the data was made: the source, skipped files, the split rule, a fingerprint.
    """

    name: str
    class_names: list[str]
    targets: np.ndarray
    images: ImageSource
    train: np.ndarray
    test: np.ndarray
    info: dict = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.targets = np.asarray(self.targets, dtype=np.int64)
        self.train = np.sort(np.asarray(self.train, dtype=np.int64))
        self.test = np.sort(np.asarray(self.test, dtype=np.int64))
        n = self.targets.shape[0]
        if self.targets.ndim != 1:
            raise CrossforgetError(f"{self.name}: targets must be one class index per image")
        if len(self.images) != n:
            raise CrossforgetError(f"{self.name}: {len(self.images)} images for {n} targets")
        if n and (self.targets.min() < 0 or self.targets.max() >= len(self.class_names)):
            raise CrossforgetError(f"{self.name}: a target lies outside the {len(self.class_names)} classes")
        if self.train.size == 0 or self.test.size == 0:
            raise CrossforgetError(f"{self.name}: the train and the test split must both hold images")
        if np.intersect1d(self.train, self.test).size:
            raise CrossforgetError(f"{self.name}: train and test splits overlap")

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def one_hot(self) -> np.ndarray:
        """(N, C) uint8 labels: the multi-hot form the unlearning methods share with hashing."""
        out = np.zeros((len(self), self.num_classes), dtype=np.uint8)
        out[np.arange(len(self)), self.targets] = 1
        return out

    def class_index(self, name: str) -> int:
        """Index of a class by name, alias or WordNet id (case-insensitive); errors list the valid names."""
        key = name.strip().lower()
        lookup = {c.lower(): i for i, c in enumerate(self.class_names)}
        if key in lookup:
            return lookup[key]
        if key in self.aliases and self.aliases[key].lower() in lookup:
            return lookup[self.aliases[key].lower()]
        raise CrossforgetError(
            f"class {name!r} is not in {self.name}; valid classes: {', '.join(self.class_names)}"
        )

    def class_indices(self, names: Sequence[str]) -> list[int]:
        """Indices of forget classes: each must exist and have training images; not every class."""
        if not names:
            raise CrossforgetError("name at least one class to forget (e.g. --forget dog)")
        indices = list(dict.fromkeys(self.class_index(n) for n in names))
        if len(indices) == self.num_classes:
            raise CrossforgetError("the request forgets every class; nothing would be retained")
        train_counts = np.bincount(self.targets[self.train], minlength=self.num_classes)
        empty = [self.class_names[i] for i in indices if train_counts[i] == 0]
        if empty:
            raise CrossforgetError(f"no training image of {', '.join(empty)}; nothing to forget")
        return indices

    def summary(self) -> dict:
        """Sizes and per-class counts, for result files and the console."""
        train = np.bincount(self.targets[self.train], minlength=self.num_classes)
        test = np.bincount(self.targets[self.test], minlength=self.num_classes)
        return {
            "name": self.name,
            "classes": self.num_classes,
            "train": int(self.train.size),
            "test": int(self.test.size),
            "train_per_class": {"min": int(train.min()), "max": int(train.max())},
            "test_per_class": {"min": int(test.min()), "max": int(test.max())},
            **{k: v for k, v in self.info.items() if k in ("skipped", "split", "fingerprint")},
        }


def stratified_split(targets: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split that puts round(test_fraction * n_c) images of every class c in the test set.

    Classes with a single image stay in training (a test image of an unseen class says nothing).
    """
    if not 0.0 < test_fraction < 1.0:
        raise CrossforgetError(f"the test fraction must lie strictly between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(targets):
        members = rng.permutation(np.flatnonzero(targets == cls))
        k = min(int(round(test_fraction * members.size)), members.size - 1)
        test.append(members[:k])
        train.append(members[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


# --- scenes-single --------------------------------------------------------------------------------


def _scene_weights() -> list[list[float]]:
    """Per class, the cumulative weights of the scenes it appears in (people: every scene, by person_prob)."""
    tables = []
    person = CLASS_NAMES.index("person")
    for cls, name in enumerate(CLASS_NAMES):
        weights = [s.weight * (s.person_prob if cls == person else s.objects.get(name, 0.0)) for s in SCENES]
        if not any(weights):
            weights = [s.weight for s in SCENES]
        tables.append(list(itertools.accumulate(weights)))
    return tables


def _pick_classes(num_classes: int | None, include: Sequence[str]) -> list[int]:
    """``num_classes`` scenes classes: those named in ``include``, then the first others (all when None)."""
    if num_classes is None or num_classes >= len(CLASS_NAMES):
        return list(range(len(CLASS_NAMES)))
    lookup = {c.lower(): i for i, c in enumerate(CLASS_NAMES)}
    wanted = []
    for name in include:
        if name.strip().lower() not in lookup:
            raise CrossforgetError(
                f"class {name!r} is not in scenes-single; valid classes: {', '.join(CLASS_NAMES)}"
            )
        wanted.append(lookup[name.strip().lower()])
    wanted = list(dict.fromkeys(wanted))
    if num_classes < max(2, len(wanted)):
        raise CrossforgetError(
            f"scenes-single: num_classes must be at least {max(2, len(wanted))}, got {num_classes}"
        )
    others = [c for c in range(len(CLASS_NAMES)) if c not in wanted]
    return sorted(wanted + others[: num_classes - len(wanted)])


def _render_split(classes: list[int], count: int, image_size: int, seed: int, stream: int) -> np.ndarray:
    """``count`` images; image i shows class ``classes[i % C]`` (balanced), from its own random stream."""
    weights = _scene_weights()
    images = np.empty((count, image_size, image_size, 3), dtype=np.uint8)
    for item in range(count):
        cls = classes[item % len(classes)]
        draws = scenes._Draws(np.random.default_rng([int(seed), stream, item]))
        scene_index = draws.pick(weights[cls])
        placed = scenes._layout(draws, [cls])
        images[item], _ = scenes._render(draws, scene_index, placed, image_size)
    return images


def generate_scenes_single(
    num_train: int = 6000,
    num_test: int = 1500,
    image_size: int = 32,
    seed: int = 0,
    num_classes: int | None = None,
    include: Sequence[str] = (),
) -> SingleLabelData:
    """One object per image on a background of a scene it belongs in; balanced classes; seeded.

    Train and test images come from separate random streams (train image i is the same whatever
    ``num_test`` is). ``num_classes`` keeps the first N classes of the scenes list plus those in
    ``include`` (e.g. the forget class); None keeps all 66.
    """
    for what, value in (("num_train", num_train), ("num_test", num_test)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise CrossforgetError(f"scenes-single: {what} must be a positive integer, got {value!r}")
    if image_size not in scenes.IMAGE_SIZES:
        raise CrossforgetError(
            f"scenes-single: image_size must be one of {scenes.IMAGE_SIZES}, got {image_size!r}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CrossforgetError(f"scenes-single: seed must be a non-negative integer, got {seed!r}")
    classes = _pick_classes(num_classes, include)
    train = _render_split(classes, num_train, image_size, seed, 0)
    test = _render_split(classes, num_test, image_size, seed, 1)
    local = np.arange(len(classes))
    targets = np.concatenate([np.resize(local, num_train), np.resize(local, num_test)])
    params = {
        "num_train": int(num_train),
        "num_test": int(num_test),
        "image_size": int(image_size),
        "seed": int(seed),
        "classes": [CLASS_NAMES[c] for c in classes],
        "version": SCENES_SINGLE_VERSION,
    }
    digest = hashlib.sha256(repr(sorted(params.items())).encode()).hexdigest()[:16]
    return SingleLabelData(
        name="scenes-single",
        class_names=[CLASS_NAMES[c] for c in classes],
        targets=targets,
        images=ArrayImages(np.concatenate([train, test])),
        train=np.arange(num_train),
        test=np.arange(num_train, num_train + num_test),
        info={
            "source": "generated",
            "params": params,
            "split": "generated train and test streams",
            "fingerprint": digest,
        },
    )


# --- loading by name ------------------------------------------------------------------------------


def _loaders() -> dict:
    from crossforget.data.single_label.deepfashion import load_deepfashion
    from crossforget.data.single_label.digits import load_digits
    from crossforget.data.single_label.imagefolder import load_imagefolder
    from crossforget.data.single_label.imagenet100 import load_imagenet100

    return {
        "scenes-single": generate_scenes_single,
        "digits": load_digits,
        "imagefolder": load_imagefolder,
        "imagenet100": load_imagenet100,
        "deepfashion": load_deepfashion,
    }


SINGLE_LABEL_DATASETS = ("scenes-single", "digits", "imagefolder", "imagenet100", "deepfashion")


def load_single_label(name: str, **options: object) -> SingleLabelData:
    """A single-label dataset by name; options are the loader's keyword arguments (errors list them)."""
    loaders = _loaders()
    if name not in loaders:
        raise CrossforgetError(f"unknown classification dataset {name!r}; choose one of {', '.join(loaders)}")
    loader = loaders[name]
    valid = [p for p in inspect.signature(loader).parameters]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise CrossforgetError(f"{name} has no option(s) {unknown}; valid: {', '.join(valid)}")
    return loader(**options)
