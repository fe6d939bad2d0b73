"""A contact sheet of dataset items, so a person can check that images, captions and labels agree."""

from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from crossforget.core.errors import CrossforgetError
from crossforget.core.io import atomic_write_bytes
from crossforget.data.container import MultiModalData

_CELL_PIXELS = 192  # small images are enlarged by whole pixel blocks to about this size
_TEXT_WIDTH = 34


def write_preview(data: MultiModalData, out: Path, count: int = 16, seed: int = 0) -> Path:
    """Write a PNG grid of ``count`` random items with their first caption and label names."""
    if count < 1:
        raise CrossforgetError(f"preview count must be at least 1, got {count}")
    images = data.require_images()
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(data), size=min(count, len(data)), replace=False))
    batch = images.load(chosen.tolist(), _native_size(images))
    columns = math.ceil(math.sqrt(len(chosen)))
    rows = math.ceil(len(chosen) / columns)
    fig = Figure(figsize=(2.6 * columns, 3.5 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for slot, (index, image) in enumerate(zip(chosen, batch, strict=True)):
        ax = fig.add_subplot(rows, columns, slot + 1)
        factor = max(1, _CELL_PIXELS // image.shape[0])
        ax.imshow(np.repeat(np.repeat(image, factor, axis=0), factor, axis=1), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        names = [data.class_names[c] for c in np.flatnonzero(data.labels[index])]
        caption = textwrap.fill(data.captions[index][0], _TEXT_WIDTH)
        labels = textwrap.fill("[" + ", ".join(names) + "]", _TEXT_WIDTH)
        ax.set_xlabel(f"{caption}\n{labels}", fontsize=7)
    fig.suptitle(f"{data.name}: {len(chosen)} of {len(data)} items", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out = Path(out)
    atomic_write_bytes(out, buffer.getvalue())
    return out


def _native_size(images: object) -> int:
    """Show in-memory images at their own size; decode others at a size fit for viewing."""
    array = getattr(images, "array", None)
    return int(array.shape[1]) if isinstance(array, np.ndarray) else 128
