"""The scenes cache: a round trip that skips generation, a damaged entry rebuilt, the folder's default."""

from __future__ import annotations

import numpy as np

import crossforget.data.scenes.generate as scenes_module
from crossforget.data.scenes.cache import default_cache_dir, load_scenes


def test_cache_round_trip(tmp_path, monkeypatch):
    first = load_scenes(num_items=30, image_size=32, seed=2, cache_dir=tmp_path)
    stored = sorted(p.name for p in (tmp_path / "scenes").iterdir())
    assert stored == [
        f"scenes-v{scenes_module.GENERATOR_VERSION}-n30-s32-seed2.{ext}" for ext in ("json", "npz")
    ]

    def fail(*args, **kwargs):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(scenes_module, "generate_scenes", fail)
    again = load_scenes(num_items=30, image_size=32, seed=2, cache_dir=tmp_path)
    assert np.array_equal(again.images.array, first.images.array)
    assert np.array_equal(again.labels, first.labels)
    assert again.captions == first.captions and again.info == first.info
    assert again.class_names == first.class_names and again.supercategories == first.supercategories


def test_damaged_cache_is_regenerated(tmp_path):
    first = load_scenes(num_items=10, image_size=32, seed=0, cache_dir=tmp_path)
    npz = next((tmp_path / "scenes").glob("*.npz"))
    npz.write_bytes(b"not a zip file")
    again = load_scenes(num_items=10, image_size=32, seed=0, cache_dir=tmp_path)
    assert np.array_equal(again.images.array, first.images.array)
    assert np.load(npz)["images"].shape == (10, 32, 32, 3)


def test_default_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CROSSFORGET_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("CROSSFORGET_CACHE")
    assert default_cache_dir().parts[-2:] == (".cache", "crossforget")
