"""The built-in scenes dataset: label space, determinism, image/label/caption agreement, preview."""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from importlib import resources

import numpy as np
import pytest
from PIL import Image

import crossforget.data.scenes.generate as scenes_module
from crossforget.core.errors import CrossforgetError
from crossforget.data.preview import write_preview
from crossforget.data.scenes.generate import generate_scenes
from crossforget.data.scenes.vocabulary import CLASSES, SCENES, SKIPPED_COCO_CLASSES

# The 80 COCO detection categories in category-id order, written out independently of the vocabulary.
COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
REQUIRED = (
    "person", "dog", "cat", "horse", "sheep", "cow", "bird", "boat", "airplane", "car", "bus", "bicycle",
    "orange", "vase", "pizza", "bed", "banana", "apple", "frisbee", "umbrella",
)  # fmt: skip


@pytest.fixture(scope="module")
def small():
    return generate_scenes(num_items=300, image_size=48, seed=0)


@pytest.fixture(scope="module")
def atlas():
    assets = resources.files("crossforget.data").joinpath("assets")
    meta = json.loads(assets.joinpath("emoji_atlas.json").read_text(encoding="utf-8"))
    sheet = Image.open(io.BytesIO(assets.joinpath("emoji_atlas.png").read_bytes())).convert("RGBA")
    return meta, sheet


def _words_of(cls_index: int) -> list[str]:
    return [form for pair in CLASSES[cls_index].nouns for form in pair]


def _mentions(caption: str, cls_index: int) -> bool:
    text = caption.lower()
    return any(re.search(rf"\b{re.escape(word)}\b", text) for word in _words_of(cls_index))


def test_label_space_is_coco_order_with_required_classes(small):
    assert len(set(COCO_NAMES)) == 80
    names = small.class_names
    assert 65 <= len(names) <= 70
    assert set(names).isdisjoint(SKIPPED_COCO_CLASSES)
    assert sorted(names + list(SKIPPED_COCO_CLASSES)) == sorted(COCO_NAMES)
    assert names == [c for c in COCO_NAMES if c in names]  # COCO category-id order
    assert set(REQUIRED) <= set(names)
    supers = dict(zip(names, small.supercategories, strict=True))
    assert (supers["dog"], supers["car"], supers["pizza"], supers["tv"], supers["cup"], supers["bed"]) == (
        "animal", "vehicle", "food", "electronic", "kitchen", "furniture")  # fmt: skip


def test_vocabulary_scenes_cover_every_class():
    names = {spec.name for spec in CLASSES}
    in_scenes = {name for scene in SCENES for name in scene.objects}
    assert in_scenes <= names and "person" not in in_scenes
    assert in_scenes | {"person"} == names
    assert len(SCENES) >= 12
    assert sum("dog" in scene.objects for scene in SCENES) >= 5


def test_atlas_has_one_visible_sprite_per_class(atlas):
    meta, sheet = atlas
    assert list(meta["classes"]) == [spec.name for spec in CLASSES]
    cell, columns = meta["cell_size"], meta["columns"]
    alpha = np.asarray(sheet)[:, :, 3]
    for entry in meta["classes"].values():
        row, col = divmod(entry["cell"], columns)
        assert (alpha[row * cell : (row + 1) * cell, col * cell : (col + 1) * cell] > 128).mean() > 0.05


def test_shapes_and_dtypes(small):
    images = small.images.array
    assert images.shape == (300, 48, 48, 3) and images.dtype == np.uint8
    assert small.labels.shape == (300, len(small.class_names)) and small.labels.dtype == np.uint8
    assert set(np.unique(small.labels)) <= {0, 1}
    assert small.labels.sum(1).min() >= 1
    assert all(len(c) == 3 and all(isinstance(t, str) and t for t in c) for c in small.captions)
    assert len(small.info["scene_types"]) == 300
    assert small.info["params"] == {"num_items": 300, "image_size": 48, "seed": 0,
                                    "generator_version": scenes_module.GENERATOR_VERSION}  # fmt: skip
    counts = [len(objects) for objects in small.info["objects"]]
    assert min(counts) >= 1 and max(counts) <= 4


def test_determinism_and_seed_dependence():
    a = generate_scenes(num_items=40, image_size=32, seed=5)
    b = generate_scenes(num_items=40, image_size=32, seed=5)
    c = generate_scenes(num_items=40, image_size=32, seed=6)
    assert np.array_equal(a.images.array, b.images.array)
    assert np.array_equal(a.labels, b.labels)
    assert a.captions == b.captions and a.info == b.info
    assert not np.array_equal(a.images.array, c.images.array)
    assert a.captions != c.captions


def test_smaller_run_is_prefix_and_content_does_not_depend_on_size(small):
    prefix = generate_scenes(num_items=25, image_size=48, seed=0)
    assert np.array_equal(prefix.images.array, small.images.array[:25])
    assert prefix.captions == small.captions[:25]
    large = generate_scenes(num_items=25, image_size=64, seed=0)
    assert large.images.array.shape == (25, 64, 64, 3)
    assert np.array_equal(large.labels, small.labels[:25])
    assert large.captions == small.captions[:25]
    assert large.info["scene_types"] == small.info["scene_types"][:25]


def test_labels_match_drawn_and_visible_objects(small, atlas):
    """Re-draw each sprite's mask from the atlas: labels equal the drawn classes, each sprite is mostly
    unoccluded, and the image pixels there follow the sprite's own colours."""
    meta, sheet = atlas
    cell, columns = meta["cell_size"], meta["columns"]
    images = small.images.array
    for item, objects in enumerate(small.info["objects"]):
        assert set(np.flatnonzero(small.labels[item])) == {obj[0] for obj in objects}
        masks, colours = [], []
        for cls, x, y, side, flip in objects:
            row, col = divmod(meta["classes"][small.class_names[cls]]["cell"], columns)
            box = (col * cell, row * cell, (col + 1) * cell, (row + 1) * cell)
            sprite = np.asarray(sheet.crop(box).resize((side, side), Image.Resampling.LANCZOS), dtype=float)
            if flip:
                sprite = sprite[:, ::-1]
            assert x >= 0 and y >= 0 and x + side <= 48 and y + side <= 48
            mask = np.zeros((48, 48), dtype=bool)
            mask[y : y + side, x : x + side] = sprite[:, :, 3] > 128
            colour = np.zeros((48, 48, 3))
            colour[y : y + side, x : x + side] = sprite[:, :, :3]
            masks.append(mask)
            colours.append(colour)
        for i in range(len(objects)):
            visible = masks[i] & ~np.logical_or.reduce([np.zeros((48, 48), bool), *masks[i + 1 :]])
            assert visible.sum() >= 0.6 * masks[i].sum()
            corr = np.corrcoef(images[item][visible].ravel().astype(float), colours[i][visible].ravel())[0, 1]
            assert corr > 0.6


def test_captions_mention_labelled_objects_and_scene(small):
    scene_words = {s.name: [p.lower() for p in s.phrases] + [s.noun] for s in SCENES}
    hits = total = 0
    for item, captions in enumerate(small.captions):
        labelled = np.flatnonzero(small.labels[item])
        hits += sum(_mentions(captions[0], c) for c in labelled)
        total += len(labelled)
        for caption in captions:
            assert any(_mentions(caption, c) for c in labelled), caption  # never every object left out
            assert any(w in caption.lower() for w in scene_words[small.info["scene_types"][item]]), caption
            assert caption[0].isupper() and caption.endswith(".")
    assert 0.9 <= hits / total < 1.0  # mostly mentioned, with some deliberate omissions


def test_counts_are_spelled_out(small):
    checked = 0
    for item, objects in enumerate(small.info["objects"]):
        counts = Counter(obj[0] for obj in objects)
        for cls, count in counts.items():
            words = {2: "two", 3: "three", 4: "four"}
            if count > 1 and _mentions(small.captions[item][0], cls):
                assert words[count] in small.captions[item][0].lower()
                checked += 1
    assert checked > 0


def test_label_frequencies_are_coco_like():
    data = generate_scenes(num_items=3000, image_size=32, seed=1)
    freq = data.labels.mean(0)
    person, dog = data.class_index("person"), data.class_index("dog")
    assert 0.3 <= freq[person] <= 0.6
    assert 0.04 <= freq[dog] <= 0.1
    assert freq.min() >= 0.004
    with_dog = data.labels[:, dog] == 1
    dog_scenes = Counter(np.array(data.info["scene_types"])[with_dog])
    assert len(dog_scenes) >= 5 and max(dog_scenes.values()) < 0.5 * with_dog.sum()
    assert data.labels[with_dog, person].mean() > 0.3  # dogs are often with people, but not always
    assert data.labels[with_dog, person].mean() < 0.8


def test_bad_parameters_raise():
    with pytest.raises(CrossforgetError, match="image_size"):
        generate_scenes(num_items=5, image_size=40)
    with pytest.raises(CrossforgetError, match="num_items"):
        generate_scenes(num_items=0)
    with pytest.raises(CrossforgetError, match="seed"):
        generate_scenes(num_items=5, seed=-1)


def test_preview_png(small, tmp_path):
    out = write_preview(small, tmp_path / "preview.png", count=9, seed=0)
    with Image.open(out) as image:
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    assert pixels.std() > 0
    with pytest.raises(CrossforgetError, match="count"):
        write_preview(small, tmp_path / "none.png", count=0)
