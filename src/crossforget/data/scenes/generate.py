"""The built-in ``scenes`` dataset: emoji objects composited onto simple scene backgrounds, with captions.

It stands in for COCO when no real data is at hand: COCO class names and a COCO-like label
distribution (many people, a mid-frequency "dog", every class frequent enough to train on), so that
forgetting a class can be measured in seconds on a CPU. Every item draws from its own random streams
(seeded by ``(seed, item)``), so a smaller run is a prefix of a larger one, and labels and captions do
not depend on the image size.
"""

from __future__ import annotations

import bisect
import io
import itertools
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages, MultiModalData
from crossforget.data.scenes.vocabulary import (
    ADJECTIVES,
    CLASS_NAMES,
    CLASSES,
    COUNT_WORDS,
    PAIR_TEMPLATES,
    PREFIXES,
    SCENES,
    SUPERCATEGORIES,
    TEMPLATES,
    Layer,
    SceneSpec,
)

# Bump whenever a change alters generated data, so stale caches are not reused.
GENERATOR_VERSION = 1
IMAGE_SIZES = (32, 48, 64)
CAPTIONS_PER_ITEM = 3

_OBJECT_COUNT_CDF = (0.17, 0.55, 0.88, 1.0)  # 1, 2, 3 or 4 objects
_PEOPLE_COUNT_CDF = (0.7, 0.95, 1.0)  # one, two or three people when people are present
_KEEP_REPEAT_PROB = 0.5  # a countable class drawn again becomes a second instance this often
# Sprite side as a fraction of the image side, by number of objects: fewer objects, larger sprites.
_SCALE_RANGE = {1: (0.62, 0.75), 2: (0.52, 0.64), 3: (0.47, 0.56), 4: (0.45, 0.5)}
_SLOTS = {
    1: (((0.5, 0.5),),),
    2: (((0.27, 0.5), (0.73, 0.5)), ((0.3, 0.3), (0.7, 0.7)), ((0.3, 0.7), (0.7, 0.3))),
    3: (
        ((0.26, 0.28), (0.74, 0.28), (0.5, 0.73)),
        ((0.5, 0.27), (0.26, 0.72), (0.74, 0.72)),
        ((0.26, 0.26), (0.74, 0.5), (0.26, 0.74)),
        ((0.74, 0.26), (0.26, 0.5), (0.74, 0.74)),
    ),
    4: (((0.26, 0.26), (0.74, 0.26), (0.26, 0.74), (0.74, 0.74)),),
}
_CENTRE_JITTER = 0.06
_MAX_COVERED = 0.3  # most of an object's visible box that objects drawn over it may hide
_LAYOUT_TRIES = 12
_HORIZON_JITTER = 0.05
_PATTERN_PHASES = 4
_OMIT_PROB = 0.05
_ADJECTIVE_PROB = 0.12
_PREFIX_PROB = 0.08
_PAIR_TEMPLATE_PROB = 0.25
_PERSON = CLASS_NAMES.index("person")

# A placed sprite: class index, left, top, side (fractions of the image side), mirrored or not.
Placement = tuple[int, float, float, float, bool]


class _Draws:
    """Uniform numbers taken from a generator in blocks.

    Most choices here are single small draws; fetching them one numpy call at a time would dominate
    the generation time, so they are drawn 64 at a time and handed out at Python speed.
    """

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []

    def random(self) -> float:
        if not self._block:
            self._block = self._rng.random(64).tolist()[::-1]
        return self._block.pop()

    def below(self, n: int) -> int:
        return min(int(self.random() * n), n - 1)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.random()

    def pick(self, cdf: tuple[float, ...] | list[float]) -> int:
        return min(bisect.bisect_right(cdf, self.random() * cdf[-1]), len(cdf) - 1)


@dataclass(frozen=True)
class _Atlas:
    """Class sprites as float RGBA in [0, 1], shape (C, 64, 64, 4), and the visible box of each."""

    rgba: np.ndarray
    content: tuple[tuple[float, float, float, float], ...]  # left, top, right, bottom in cell fractions


@lru_cache(maxsize=1)
def _atlas() -> _Atlas:
    assets = resources.files("crossforget.data").joinpath("assets")
    meta = json.loads(assets.joinpath("emoji_atlas.json").read_text(encoding="utf-8"))
    if list(meta["classes"]) != list(CLASS_NAMES):
        raise CrossforgetError(
            "the emoji atlas does not match the scenes class list; re-run scripts/render_emoji_atlas.py"
        )
    sheet = np.asarray(
        Image.open(io.BytesIO(assets.joinpath("emoji_atlas.png").read_bytes())).convert("RGBA")
    )
    cell, columns = meta["cell_size"], meta["columns"]
    rgba = np.empty((len(CLASS_NAMES), cell, cell, 4), dtype=np.float32)
    content = []
    for index, name in enumerate(CLASS_NAMES):
        row, col = divmod(meta["classes"][name]["cell"], columns)
        rgba[index] = sheet[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] / 255.0
        ys, xs = np.nonzero(rgba[index, :, :, 3] > 0.1)
        content.append((xs.min() / cell, ys.min() / cell, (xs.max() + 1) / cell, (ys.max() + 1) / cell))
    return _Atlas(rgba=rgba, content=tuple(content))


@lru_cache(maxsize=4096)
def _sprite(class_index: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A sprite resized to ``side`` pixels: premultiplied RGB in 0-255 and alpha, both float32."""
    cell = (_atlas().rgba[class_index] * 255.0).round().astype(np.uint8)
    small = np.asarray(Image.fromarray(cell, "RGBA").resize((side, side), Image.Resampling.LANCZOS))
    alpha = small[:, :, 3:4].astype(np.float32) / 255.0
    return _frozen(small[:, :, :3].astype(np.float32) * alpha), _frozen(alpha)


@lru_cache(maxsize=8)
def _fixed_noise(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed grain (2-D, in [-1, 1]) and pixel noise (3 channels, unit normal), each 3x the image side.

    Images take randomly placed windows of them: far cheaper than fresh noise per image, and just as
    unrelated to the labels.
    """
    rng = np.random.default_rng(7919)
    grain = rng.uniform(-1.0, 1.0, (3 * size, 3 * size)).astype(np.float32)
    return _frozen(grain), _frozen(rng.standard_normal((3 * size, 3 * size, 3), dtype=np.float32))


def _frozen(array: np.ndarray) -> np.ndarray:
    """Mark a cached array read-only, so no caller can corrupt later images by editing it."""
    array.flags.writeable = False
    return array


@lru_cache(maxsize=1)
def _scene_tables() -> tuple[list[float], list[tuple[list[int], list[float]]]]:
    """Cumulative scene weights and, per scene, its non-person classes with cumulative weights."""
    scene_cdf = list(itertools.accumulate(scene.weight for scene in SCENES))
    tables = [
        (
            [CLASS_NAMES.index(name) for name in scene.objects],
            list(itertools.accumulate(scene.objects.values())),
        )
        for scene in SCENES
    ]
    return scene_cdf, tables


# --- what is in the picture -------------------------------------------------------------------------


def _sample_objects(draws: _Draws) -> tuple[int, list[int]]:
    """A scene index and the class of every object instance (people first).

    Classes are drawn with replacement from the scene's weights, so a rare class stays rare in a
    scene with few classes; drawing a class again adds an instance only for countable classes.
    Classes that are usually handled by someone (``with_person``) may then bring a person along.
    """
    scene_cdf, tables = _scene_tables()
    scene_index = draws.pick(scene_cdf)
    total = 1 + draws.pick(_OBJECT_COUNT_CDF)
    people = (
        min(total, 1 + draws.pick(_PEOPLE_COUNT_CDF))
        if draws.random() < SCENES[scene_index].person_prob
        else 0
    )
    classes, cdf = tables[scene_index]
    others: list[int] = []
    for _ in range(2 * (total - people)):  # a scene with few classes may end up with fewer objects
        if people + len(others) == total:
            break
        cls = classes[draws.pick(cdf)]
        if cls not in others or (CLASSES[cls].countable and draws.random() < _KEEP_REPEAT_PROB):
            others.append(cls)
    if not people and others:
        anchor = max(dict.fromkeys(others), key=lambda c: CLASSES[c].with_person)
        if draws.random() < CLASSES[anchor].with_person:
            people = 1
            if len(others) == len(_OBJECT_COUNT_CDF):  # make room: drop the last object but the anchor
                keep = others.index(anchor)
                del others[max(i for i in range(len(others)) if i != keep)]
    return scene_index, [_PERSON] * people + others


def _layout(draws: _Draws, classes: list[int]) -> list[Placement]:
    """Place sprites so that none is mostly hidden; the placements come in draw order.

    Sprites go to jittered slots of a fixed pattern; a layout in which objects drawn later would hide
    more than ``_MAX_COVERED`` of an earlier object's visible box is redrawn, slightly smaller.
    """
    n = len(classes)
    low, high = _SCALE_RANGE[n]
    content = _atlas().content
    placed: list[Placement] = []
    for attempt in range(_LAYOUT_TRIES):
        slots = list(_SLOTS[n][draws.below(len(_SLOTS[n]))])
        slots.sort(key=lambda _: draws.random())
        placed, boxes = [], []
        for cls, (cx, cy) in zip(classes, slots, strict=True):
            side = draws.uniform(low, high) * 0.96**attempt
            left = min(max(cx + draws.uniform(-_CENTRE_JITTER, _CENTRE_JITTER) - side / 2, 0.0), 1.0 - side)
            top = min(max(cy + draws.uniform(-_CENTRE_JITTER, _CENTRE_JITTER) - side / 2, 0.0), 1.0 - side)
            flip = draws.random() < 0.5
            x0, y0, x1, y1 = content[cls]
            if flip:
                x0, x1 = 1.0 - x1, 1.0 - x0
            placed.append((cls, left, top, side, flip))
            boxes.append((left + x0 * side, top + y0 * side, left + x1 * side, top + y1 * side))
        order = sorted(range(n), key=lambda i: boxes[i][3])  # lower objects are nearer, so drawn later
        if max(_covered_fractions([boxes[i] for i in order])) <= _MAX_COVERED:
            break
    return [placed[i] for i in order]


def _covered_fractions(boxes: list[tuple[float, float, float, float]]) -> list[float]:
    """For boxes in draw order, an upper bound on how much of each one later boxes cover."""
    covered = []
    for i, (ax0, ay0, ax1, ay1) in enumerate(boxes):
        overlap = 0.0
        for bx0, by0, bx1, by1 in boxes[i + 1 :]:
            overlap += max(min(ax1, bx1) - max(ax0, bx0), 0.0) * max(min(ay1, by1) - max(ay0, by0), 0.0)
        covered.append(overlap / ((ax1 - ax0) * (ay1 - ay0)))
    return covered


# --- pixels ------------------------------------------------------------------------------------------


@lru_cache(maxsize=2048)
def _base_background(scene_index: int, size: int, shift: int, phase: int) -> tuple[np.ndarray, ...]:
    """A scene's untinted background for one horizon shift (pixels) and pattern phase.

    Returns the image (float32, 0-255), the layer index of each row and the grain strength of each row,
    so that per-image tints and grain are a cheap addition.
    """
    image = np.zeros((size, size, 3), dtype=np.float32)
    row_layer = np.zeros(size, dtype=np.int64)
    row_texture = np.zeros(size, dtype=np.float32)
    for index, layer in enumerate(SCENES[scene_index].background):
        top = round(layer.top * size) + (shift if 0.0 < layer.top < 1.0 else 0)
        bottom = round(layer.bottom * size) + (shift if 0.0 < layer.bottom < 1.0 else 0)
        if bottom <= top:
            continue
        image[top:bottom] = _pattern(layer, top, bottom, size, phase / _PATTERN_PHASES)
        row_layer[top:bottom] = index
        row_texture[top:bottom] = layer.texture
    return _frozen(image), _frozen(row_layer), _frozen(row_texture)


def _pattern(layer: Layer, top: int, bottom: int, size: int, phase: float) -> np.ndarray:
    """Rows ``top:bottom`` of one background layer, shape (bottom - top, size, 3)."""
    c1 = np.asarray(layer.color, dtype=np.float32)
    c2 = np.asarray(layer.color2, dtype=np.float32)
    period = max(2, round(layer.period * size))
    py = np.arange(top, bottom)[:, None]
    px = np.arange(size)[None, :] + int(phase * period)
    if layer.kind in ("gradient", "waves"):
        t = ((py - top + 0.5) / (bottom - top))[:, :, None].astype(np.float32)
        band = np.broadcast_to(c1 + (c2 - c1) * t, (bottom - top, size, 3)).copy()
        if layer.kind == "waves":
            wave = np.sin(2 * np.pi * (py / period + 0.25 * np.sin(np.pi * px / period + 2 * np.pi * phase)))
            band += (wave > 0.8)[:, :, None] * 45.0
        return band
    if layer.kind == "checker":
        mask = (py // period + px // period) % 2 == 0
    elif layer.kind == "grid":
        mask = ~((py % period == 0) | (px % period == 0))
    elif layer.kind == "planks":
        mask = np.broadcast_to((px // period) % 2 == 0, (bottom - top, size))
    elif layer.kind == "stripes":
        mask = np.broadcast_to((py // period) % 2 == 0, (bottom - top, size))
    elif layer.kind == "dashes":
        mask = np.broadcast_to(px % period < period // 2, (bottom - top, size))
    else:
        raise ValueError(f"unknown background layer kind {layer.kind!r}")
    return np.where(mask[:, :, None], c1, c2)


def _render(
    draws: _Draws, scene_index: int, placed: list[Placement], size: int
) -> tuple[np.ndarray, list[list[int]]]:
    """Background with tinted layers and grain, sprites alpha-blended on top, colour jitter and noise.

    Returns the uint8 image and each sprite as [class, left, top, side, flipped] in pixels.
    """
    reach = round(_HORIZON_JITTER * size)
    shift = draws.below(2 * reach + 1) - reach
    base, row_layer, row_texture = _base_background(scene_index, size, shift, draws.below(_PATTERN_PHASES))
    grain, noise = _fixed_noise(size)
    tints = np.array([draws.uniform(-10.0, 10.0) for _ in range(3 * len(SCENES[scene_index].background))],
                     dtype=np.float32).reshape(-1, 3)  # fmt: skip
    gy, gx = draws.below(2 * size), draws.below(2 * size)
    image = base + tints[row_layer][:, None, :]
    image += grain[gy : gy + size, gx : gx + size, None] * row_texture[:, None, None]
    drawn = []
    for cls, left, top, side, flip in placed:
        px = max(1, round(side * size))
        x, y = min(round(left * size), size - px), min(round(top * size), size - px)
        rgb, alpha = _sprite(cls, px)
        if flip:
            rgb, alpha = rgb[:, ::-1], alpha[:, ::-1]
        region = image[y : y + px, x : x + px]
        region *= 1.0 - alpha
        region += rgb * draws.uniform(0.88, 1.12)
        drawn.append([cls, x, y, px, int(flip)])
    brightness = draws.uniform(0.9, 1.1)
    image *= np.array([brightness * draws.uniform(0.95, 1.05) for _ in range(3)], dtype=np.float32)
    ny, nx, sigma = draws.below(2 * size), draws.below(2 * size), draws.uniform(2.0, 6.0)
    image += noise[ny : ny + size, nx : nx + size] * sigma
    return np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8), drawn


# --- words -------------------------------------------------------------------------------------------


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _noun_phrase(draws: _Draws, cls: int, count: int) -> str:
    """A phrase like "a dog", "two puppies" or "a small kitten": synonym, count, maybe an adjective."""
    nouns = CLASSES[cls].nouns
    pick = 0 if len(nouns) == 1 or draws.random() < 0.5 else 1 + draws.below(len(nouns) - 1)
    singular, plural = nouns[pick]
    adjective = ADJECTIVES[draws.below(len(ADJECTIVES))] + " " if draws.random() < _ADJECTIVE_PROB else ""
    if count == 1:
        return _article(adjective + singular)
    return f"{COUNT_WORDS[count]} {adjective}{plural}"


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def _caption(draws: _Draws, scene: SceneSpec, groups: list[tuple[int, int]]) -> str:
    """One sentence about the objects in random order, each left out with a small probability."""
    kept = [g for g in groups if draws.random() >= _OMIT_PROB] or [groups[draws.below(len(groups))]]
    kept.sort(key=lambda _: draws.random())
    phrases = [_noun_phrase(draws, cls, count) for cls, count in kept]
    if len(phrases) >= 2 and draws.random() < _PAIR_TEMPLATE_PROB:
        template = PAIR_TEMPLATES[draws.below(len(PAIR_TEMPLATES))]
    else:
        template = TEMPLATES[draws.below(len(TEMPLATES))]
    text = template.format(
        objects=_join(phrases),
        first=phrases[0],
        rest=_join(phrases[1:]) if len(phrases) > 1 else "",
        scene=scene.phrases[draws.below(len(scene.phrases))],
        a_noun=_article(scene.noun),
        be="is" if sum(count for _, count in kept) == 1 else "are",
    )
    if draws.random() < _PREFIX_PROB:
        text = PREFIXES[draws.below(len(PREFIXES))] + " " + text
    return text[0].upper() + text[1:]


def _captions(draws: _Draws, scene: SceneSpec, classes: list[int]) -> list[str]:
    groups: dict[int, int] = {}
    for cls in classes:
        groups[cls] = groups.get(cls, 0) + 1
    return [_caption(draws, scene, list(groups.items())) for _ in range(CAPTIONS_PER_ITEM)]


# --- public API --------------------------------------------------------------------------------------


def check_params(num_items: int, image_size: int, seed: int) -> None:
    """Refuse parameters the generator cannot honour, with the valid range in the message."""
    if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) or num_items < 1:
        raise CrossforgetError(f"scenes: num_items must be a positive integer, got {num_items!r}")
    if image_size not in IMAGE_SIZES:
        raise CrossforgetError(
            f"scenes: image_size {image_size!r} is not supported; "
            f"use one of {', '.join(map(str, IMAGE_SIZES))}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise CrossforgetError(f"scenes: seed must be a non-negative integer, got {seed!r}")


def generate_scenes(num_items: int = 10_000, image_size: int = 48, seed: int = 0) -> MultiModalData:
    """Generate the dataset in memory; the same arguments always give the same arrays and texts.

    ``info`` holds each item's scene type, its sprites in pixels (class, left, top, side, flipped, in
    draw order) and the generator parameters.
    """
    check_params(num_items, image_size, seed)
    images = np.empty((num_items, image_size, image_size, 3), dtype=np.uint8)
    labels = np.zeros((num_items, len(CLASS_NAMES)), dtype=np.uint8)
    captions: list[list[str]] = []
    scene_types: list[str] = []
    objects: list[list[list[int]]] = []
    for item in range(num_items):
        # One stream per item: a smaller run is a prefix of a larger one. Pixels are drawn last, so
        # what is shown and said never depends on the image size.
        draws = _Draws(np.random.default_rng([int(seed), item]))
        scene_index, classes = _sample_objects(draws)
        scene = SCENES[scene_index]
        placed = _layout(draws, classes)
        captions.append(_captions(draws, scene, classes))
        images[item], drawn = _render(draws, scene_index, placed, image_size)
        labels[item, classes] = 1
        scene_types.append(scene.name)
        objects.append(drawn)
    info = {
        "scene_types": scene_types,
        "objects": objects,
        "objects_format": "per item, in draw order: [class index, left px, top px, side px, flipped]",
        "params": scene_params(num_items, image_size, seed),
    }
    return MultiModalData(
        name="scenes",
        class_names=list(CLASS_NAMES),
        labels=labels,
        captions=captions,
        images=ArrayImages(images),
        supercategories=list(SUPERCATEGORIES),
        info=info,
    )


def scene_params(num_items: int, image_size: int, seed: int) -> dict:
    """The generator parameters as recorded in ``info`` and in the cache's metadata."""
    return {"num_items": int(num_items), "image_size": int(image_size), "seed": int(seed),
            "generator_version": GENERATOR_VERSION}  # fmt: skip
