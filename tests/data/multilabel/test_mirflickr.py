"""MIRFlickr-25K: the real DCMH .mat files (when present), synthetic .mat files and a synthetic raw tree."""

from __future__ import annotations

import contextlib
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages
from crossforget.data.multilabel.mirflickr import CONCEPTS, MirFlickrMat, MirFlickrRaw, load_mirflickr

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"
MIRFLICKR = SHARED / "mirflickr25k"

EXPECTED_CONCEPTS = [
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
    "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
    "tree", "water",
]  # fmt: skip


@pytest.fixture(scope="module")
def cleared() -> MirFlickrMat:
    if not MIRFLICKR.is_dir():
        pytest.skip(f"shared test data not found at {MIRFLICKR}")
    return MirFlickrMat(MIRFLICKR)


def test_real_shapes_and_column_sums(cleared: MirFlickrMat) -> None:
    assert cleared.class_names == EXPECTED_CONCEPTS == CONCEPTS
    assert cleared.labels.shape == (20015, 24) and cleared.labels.dtype == np.uint8
    assert cleared.tags.shape == (20015, 1386)
    assert (cleared.labels.sum(axis=1) >= 1).all()
    sums = dict(zip(cleared.class_names, cleared.labels.sum(axis=0).tolist(), strict=True))
    assert sums["people"] == 7848 and sums["structures"] == 8463 and sums["baby"] == 179
    dog, animals = cleared.labels[:, 5] == 1, cleared.labels[:, 0] == 1
    assert dog.sum() == 581 and (dog & animals).sum() == 580
    assert cleared.skipped == 0 and cleared.images is None and cleared.image_files is None


def test_real_texts_are_the_tag_words(cleared: MirFlickrMat) -> None:
    assert cleared.tag_names[:2] == ["tag0000", "tag0001"] and len(cleared.tag_names) == 1386
    captions = cleared.captions
    for row in (0, 1, 20014):
        words = [f"tag{j:04d}" for j in range(1386) if cleared.tags[row, j]]
        assert captions[row] == [" ".join(words)]


def test_real_without_images_still_converts(cleared: MirFlickrMat) -> None:
    data = cleared.to_multimodal()
    assert data.name == "mirflickr" and len(data) == 20015 and data.images is None
    assert "no image modality" in data.info["images"]
    with pytest.raises(CrossforgetError, match="no image modality"):
        data.require_images()


def test_real_with_tag_vocabulary(tmp_path: Path) -> None:
    if not MIRFLICKR.is_dir():
        pytest.skip(f"shared test data not found at {MIRFLICKR}")
    vocabulary = tmp_path / "tags.txt"
    vocabulary.write_text("\n".join(f"word{j}" for j in range(1386)) + "\n")
    data = MirFlickrMat(MIRFLICKR, tag_vocabulary=vocabulary)
    first = np.flatnonzero(data.tags[0])
    assert data.captions[0] == [" ".join(f"word{j}" for j in first)]
    vocabulary.write_text("too\nfew\n")
    with pytest.raises(CrossforgetError, match="has 2 tags but YAll has 1386 columns"):
        MirFlickrMat(MIRFLICKR, tag_vocabulary=vocabulary)


# ----- synthetic .mat files -----------------------------------------------------------------------------

LABELS = np.zeros((4, 24), dtype=np.uint8)
LABELS[[0, 1, 2, 3], [0, 5, 13, 23]] = 1
TAGS = np.array([[1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=np.uint8)


def _mat_root(tmp_path: Path, labels: np.ndarray = LABELS, tags: np.ndarray = TAGS) -> Path:
    root = tmp_path / "mat"
    (root / "YAll").mkdir(parents=True)
    scipy.io.savemat(root / "mirflickr25k-lall.mat", {"LAll": labels})
    scipy.io.savemat(root / "YAll" / "mirflickr25k-yall.mat", {"YAll": tags})  # DCMH sub-folder layout
    return root


def _nchw(n: int = 4, h: int = 5, w: int = 6) -> np.ndarray:
    return np.arange(n * 3 * h * w, dtype=np.int64).reshape(n, 3, h, w).astype(np.uint8)


def test_image_array_in_nchw_and_matlab_layouts(tmp_path: Path) -> None:
    root = _mat_root(tmp_path)
    nchw = _nchw()
    scipy.io.savemat(root / "mirflickr25k-iall.mat", {"IAll": nchw})
    data = MirFlickrMat(root)
    assert isinstance(data.images, ArrayImages)
    assert data.images.array.shape == (4, 5, 6, 3)
    assert data.images.array[2, 4, 1, 0] == nchw[2, 0, 4, 1]
    assert data.images.array[3, 1, 5, 2] == nchw[3, 2, 1, 5]
    other = tmp_path / "hwcn.mat"
    scipy.io.savemat(other, {"IAll": nchw.transpose(2, 3, 1, 0)})
    np.testing.assert_array_equal(
        MirFlickrMat(root, image_array=other).images.array, nchw.transpose(0, 2, 3, 1)
    )
    assert MirFlickrMat(root).to_multimodal().require_images().load([1], 5).shape == (1, 5, 5, 3)


def test_float_images_in_unit_range_become_uint8(tmp_path: Path) -> None:
    root = _mat_root(tmp_path)
    scipy.io.savemat(root / "mirflickr25k-iall.mat", {"IAll": np.full((4, 2, 2, 3), 0.5)})
    assert (MirFlickrMat(root).images.array == 128).all()


def test_bad_image_arrays(tmp_path: Path) -> None:
    root = _mat_root(tmp_path)
    scipy.io.savemat(tmp_path / "wrong.mat", {"IAll": _nchw(n=3)})
    with pytest.raises(CrossforgetError, match=r"shape \(3, 3, 5, 6\); expected 4 x 3 x H x W"):
        MirFlickrMat(root, image_array=tmp_path / "wrong.mat")
    with pytest.raises(CrossforgetError, match="image array .* not found"):
        MirFlickrMat(root, image_array=tmp_path / "absent.mat")
    scipy.io.savemat(tmp_path / "other.mat", {"Images": _nchw()})
    with pytest.raises(CrossforgetError, match=r"has no variable 'IAll' \(it holds \['Images'\]\)"):
        MirFlickrMat(root, image_array=tmp_path / "other.mat")
    (tmp_path / "text.mat").write_text("not matlab at all, just some text" * 10)
    with pytest.raises(CrossforgetError, match="not a readable MATLAB"):
        MirFlickrMat(root, image_array=tmp_path / "text.mat")


def _v73_header(path: Path) -> None:
    """The 128-byte header of a MATLAB v7.3 file; the HDF5 payload is never read in these tests."""
    path.write_bytes(b"MATLAB 7.3 MAT-file".ljust(116) + bytes(8) + bytes([0, 2]) + b"IM" + bytes(512))


def test_v73_file_without_h5py_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mat_root(tmp_path)
    _v73_header(root / "mirflickr25k-iall.mat")
    monkeypatch.setitem(sys.modules, "h5py", None)  # import fails even where h5py is installed
    with pytest.raises(CrossforgetError, match=r"v7\.3 \(HDF5\).*pip install h5py"):
        MirFlickrMat(root)


def test_v73_file_is_read_with_reversed_axes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _mat_root(tmp_path)
    _v73_header(root / "mirflickr25k-iall.mat")
    nchw = _nchw()
    stored = {"IAll": np.ascontiguousarray(nchw.T)}  # HDF5 keeps MATLAB's column-major axes reversed
    fake = types.SimpleNamespace(File=lambda path, mode: contextlib.nullcontext(stored))
    monkeypatch.setitem(sys.modules, "h5py", fake)
    np.testing.assert_array_equal(MirFlickrMat(root).images.array, nchw.transpose(0, 2, 3, 1))


def test_label_and_tag_files_must_agree(tmp_path: Path) -> None:
    with pytest.raises(CrossforgetError, match="LAll has 4 rows, YAll 3"):
        MirFlickrMat(_mat_root(tmp_path / "a", tags=TAGS[:3]))
    with pytest.raises(CrossforgetError, match="38 columns, expected the 24 concepts"):
        MirFlickrMat(_mat_root(tmp_path / "b", labels=np.zeros((4, 38), dtype=np.uint8)))
    with pytest.raises(CrossforgetError, match="must be a 2-D 0/1 matrix"):
        MirFlickrMat(_mat_root(tmp_path / "c", tags=TAGS * 2))
    (tmp_path / "d").mkdir()
    with pytest.raises(
        CrossforgetError, match=r"lacks mirflickr25k-lall\.mat, mirflickr25k-yall\.mat; expected"
    ):
        MirFlickrMat(tmp_path / "d")


def _jpeg(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), value, dtype=np.uint8)).save(path)


def test_file_name_list_with_missing_and_broken_images(tmp_path: Path) -> None:
    root = _mat_root(tmp_path)
    names = np.array(["im1.jpg", "im2.jpg", "im3.jpg", "im4.jpg"], dtype=object)
    scipy.io.savemat(root / "mirflickr25k-fall.mat", {"FAll": names.reshape(-1, 1)})
    for k, value in ((1, 10), (3, 30)):
        _jpeg(root / "mirflickr" / f"im{k}.jpg", value)
    (root / "mirflickr" / "im4.jpg").write_bytes(b"")  # im2 missing, im4 empty
    data = MirFlickrMat(root)
    assert [p.name for p in data.image_files] == ["im1.jpg", "im3.jpg"]
    np.testing.assert_array_equal(data.labels, LABELS[[0, 2]])
    np.testing.assert_array_equal(data.tags, TAGS[[0, 2]])
    assert data.skipped == 2
    assert data.info["skipped_missing_images"] == 1 and data.info["skipped_unreadable_images"] == 1
    assert data.images.load([1], 8)[0, 0, 0, 0] == 30
    scipy.io.savemat(root / "mirflickr25k-fall.mat", {"FAll": names[:3].reshape(-1, 1)})
    with pytest.raises(CrossforgetError, match="names 3 images but LAll has 4 rows"):
        MirFlickrMat(root)


# ----- synthetic raw release -------------------------------------------------------------------------------


def _raw_tree(tmp_path: Path) -> Path:
    """Six images; im2 has no label, im5 only rare tags, im6 is labelled but undecodable, im9 not on disk."""
    root = tmp_path / "raw"
    folder = root / "mirflickr"
    tags = {1: "Sky\nsun\nsky\n", 2: "sky\n", 3: "sun\nbeach\n", 4: "beach\nsky\n", 5: "rare\n", 6: "sky\n"}
    for k, text in tags.items():
        _jpeg(folder / f"im{k}.jpg", 40 * k)
        (folder / "meta" / "tags").mkdir(parents=True, exist_ok=True)
        (folder / "meta" / "tags" / f"tags{k}.txt").write_text(text)
    (folder / "im6.jpg").write_bytes(b"garbage")
    _jpeg(folder / "im7.jpg", 1)  # no tags file at all, no label
    annotations = root / "mirflickr25k_annotations_v080"
    annotations.mkdir()
    members = {"sky": [1, 4, 6, 9], "sea": [3], "clouds": [1], "people": [5]}
    for concept in CONCEPTS:
        (annotations / f"{concept}.txt").write_text("".join(f"{k}\n" for k in members.get(concept, [])))
    (annotations / "sky_r1.txt").write_text("2\n")  # the stricter annotation is ignored
    return root


def test_raw_release_follows_the_dcmh_recipe(tmp_path: Path) -> None:
    data = MirFlickrRaw(_raw_tree(tmp_path), min_tag_count=2)
    # tag document counts over on-disk images: sky 4 (im1, im2, im4, im6), sun 2, beach 2, rare 1
    assert data.tag_names == ["beach", "sky", "sun"]
    assert data.image_ids == [1, 3, 4]
    assert [p.name for p in data.image_files] == ["im1.jpg", "im3.jpg", "im4.jpg"]
    np.testing.assert_array_equal(data.tags, [[0, 1, 1], [1, 0, 1], [1, 1, 0]])
    assert data.captions == [["sky sun"], ["beach sun"], ["beach sky"]]
    expected = np.zeros((3, 24), dtype=np.uint8)
    expected[0, [CONCEPTS.index("sky"), CONCEPTS.index("clouds")]] = 1
    expected[1, CONCEPTS.index("sea")] = 1
    expected[2, CONCEPTS.index("sky")] = 1
    np.testing.assert_array_equal(data.labels, expected)
    info = data.info
    assert (info["skipped_no_label"], info["skipped_no_tag"], info["skipped_unreadable_images"]) == (2, 1, 1)
    assert info["labelled_but_missing_on_disk"] == 1 and data.skipped == 5
    assert data.to_multimodal().images.load([2], 4)[0, 0, 0, 0] == 160


def test_raw_release_default_threshold_and_errors(tmp_path: Path) -> None:
    root = _raw_tree(tmp_path)
    with pytest.raises(CrossforgetError, match="lower min_tag_count"):
        MirFlickrRaw(root)  # no tag reaches 20 images in six
    (root / "mirflickr25k_annotations_v080" / "dog.txt").unlink()
    with pytest.raises(CrossforgetError, match=r"lacks mirflickr25k_annotations_v080/dog\.txt; expected"):
        MirFlickrRaw(root)


def test_load_mirflickr_picks_the_format(tmp_path: Path) -> None:
    mat = load_mirflickr(_mat_root(tmp_path))
    assert len(mat) == 4 and mat.info["format"] == "dcmh-mat"
    raw_root = _raw_tree(tmp_path)
    with pytest.raises(CrossforgetError, match="apply to the DCMH .mat files only"):
        load_mirflickr(raw_root, image_array=tmp_path / "x.mat")
    with pytest.raises(CrossforgetError, match="holds neither"):
        load_mirflickr(tmp_path / "empty")
