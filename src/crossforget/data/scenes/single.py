"""``scenes-single``: one emoji object per image on the backgrounds of the ``scenes`` dataset.

Same sprites, same scene types, a scene that suits the object, so Table 1 (classification) runs
offline in minutes. The images are drawn with the scenes generator's own random draws and renderer.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages, SingleLabelData
from crossforget.data.names import name_indices
from crossforget.data.registry import register_dataset
from crossforget.data.scenes import generate as scenes
from crossforget.data.scenes.vocabulary import CLASS_NAMES, SCENES

SCENES_SINGLE_VERSION = 1


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
    wanted = list(dict.fromkeys(name_indices(include, CLASS_NAMES, "scenes-single")))
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


@register_dataset("scenes-single", "single", about="built in")
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
