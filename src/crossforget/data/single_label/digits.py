"""``digits``: scikit-learn's bundled handwritten digits as a built-in single-label dataset.

1,797 real 8x8 grey images of the digits 0-9 (the UCI optical recognition test set), shipped inside
scikit-learn, so Table 1 runs on real images offline. Grey levels (0-16, ink bright) are scaled to
0-255, upsampled with Pillow's bicubic filter to the classifier's input size and repeated into three
channels. The data has no test split of its own: a seeded stratified split makes one.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages, SingleLabelData
from crossforget.data.registry import register_dataset
from crossforget.data.splits import stratified_split

DIGITS_VERSION = 1
MAX_LEVEL = 16.0  # the grey levels of load_digits run from 0 to 16


@register_dataset("digits", "single", about="scikit-learn's bundled 8x8 digits")
def load_digits(image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0) -> SingleLabelData:
    """The 1,797 digit images at ``image_size`` px; ``test_fraction`` of every class is the test split."""
    from sklearn.datasets import load_digits as bundled

    if isinstance(image_size, bool) or not isinstance(image_size, (int, np.integer)) or image_size < 8:
        raise CrossforgetError(f"digits: image_size must be an integer >= 8 (e.g. 32), got {image_size!r}")
    if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
        raise CrossforgetError(f"digits: split_seed must be a non-negative integer, got {split_seed!r}")
    raw = bundled()
    grey = np.clip(np.rint(raw.images * (255.0 / MAX_LEVEL)), 0, 255).astype(np.uint8)
    images = np.empty((grey.shape[0], image_size, image_size, 3), dtype=np.uint8)
    for i, image in enumerate(grey):
        big = Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BICUBIC)
        images[i] = np.asarray(big)[:, :, None]
    targets = np.asarray(raw.target, dtype=np.int64)
    train, test = stratified_split(targets, test_fraction, split_seed)
    params = {
        "image_size": int(image_size),
        "test_fraction": float(test_fraction),
        "split_seed": int(split_seed),
        "version": DIGITS_VERSION,
    }
    source = hashlib.sha256(raw.images.tobytes() + targets.tobytes()).hexdigest()[:16]
    digest = hashlib.sha256(repr((sorted(params.items()), source)).encode()).hexdigest()[:16]
    return SingleLabelData(
        name="digits",
        class_names=[str(d) for d in range(10)],
        targets=targets,
        images=ArrayImages(images),
        train=train,
        test=test,
        info={
            "source": "scikit-learn load_digits (bundled, no download)",
            "params": params,
            "split": f"seeded stratified split, test fraction {test_fraction:g}, seed {split_seed}",
            "fingerprint": digest,
        },
    )
