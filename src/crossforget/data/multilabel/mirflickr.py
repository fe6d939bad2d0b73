"""MIRFlickr-25K, either as the DCMH "cleared set" .mat files or from the raw release.

The .mat files (``LAll`` labels, ``YAll`` 1386-tag bag-of-words, optional ``IAll`` images or ``FAll``
file names) are what most cross-modal hashing papers use, so results stay comparable. The raw release
is rebuilt with the DCMH recipe: keep tags used by at least 20 images, then drop images without a
label or without a kept tag. Texts are the item's tag words joined into one sentence.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError, matfile_version

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import ArrayImages, FileImages, ImageSource, MultiModalData
from crossforget.data.images import unreadable_images
from crossforget.data.multilabel.tagged import TaggedItems
from crossforget.data.registry import register_dataset, require_root

CONCEPTS = [
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
    "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
    "tree", "water",
]  # fmt: skip
MAT_LAYOUT = (
    "ROOT/mirflickr25k-lall.mat (LAll) and ROOT/mirflickr25k-yall.mat (YAll), each optionally inside "
    "ROOT/LAll/ and ROOT/YAll/"
)
RAW_LAYOUT = (
    "ROOT/mirflickr/im<k>.jpg, ROOT/mirflickr/meta/tags/tags<k>.txt (or meta/tags_raw/) and "
    "ROOT/mirflickr25k_annotations_v080/<concept>.txt"
)
MIN_TAG_COUNT = 20


def _find_mat(root: Path, variable: str) -> Path | None:
    """DCMH archives put each file either at the top or in a folder named after its variable."""
    name = f"mirflickr25k-{variable.lower()}.mat"
    return next((p for p in (root / name, root / variable / name) if p.is_file()), None)


def read_mat_variable(path: Path, variable: str) -> np.ndarray:
    """One variable of a MATLAB file in MATLAB's axis order; v7.3 (HDF5) files need h5py."""
    try:
        major, _ = matfile_version(str(path))
        if major == 2:
            return _read_hdf5_variable(path, variable)
        data = scipy.io.loadmat(str(path), variable_names=[variable])
    except (MatReadError, ValueError, OSError) as exc:
        raise CrossforgetError(f"{path} is not a readable MATLAB .mat file ({exc}); re-download it") from None
    if variable not in data:
        present = [name for name, *_ in scipy.io.whosmat(str(path))]
        raise CrossforgetError(
            f"{path} has no variable {variable!r} (it holds {present}); is it the right file?"
        )
    return data[variable]


def _read_hdf5_variable(path: Path, variable: str) -> np.ndarray:
    try:
        import h5py
    except ImportError:
        raise CrossforgetError(
            f"{path} is a MATLAB v7.3 (HDF5) file and reading it needs h5py; run `pip install h5py` "
            "or re-save the file in MATLAB with save(..., '-v7')"
        ) from None
    with h5py.File(path, "r") as handle:
        if variable not in handle:
            raise CrossforgetError(f"{path} has no variable {variable!r} (it holds {sorted(handle)})")
        array = np.asarray(handle[variable][()])
    if array.dtype.kind not in "biuf":
        raise CrossforgetError(
            f"{path}: variable {variable!r} is not a numeric array in this v7.3 file; "
            "re-save it in MATLAB with save(..., '-v7')"
        )
    # HDF5 stores MATLAB's column-major arrays with the axes reversed.
    return array.T


def images_to_nhwc(array: np.ndarray, num_items: int, source: Path) -> np.ndarray:
    """(N,3,H,W), (N,H,W,3) or MATLAB's (H,W,3,N) as uint8 (N,H,W,3), without copying when possible."""
    shape = array.shape
    if array.ndim == 4 and shape[0] == num_items and shape[1] == 3:
        array = array.transpose(0, 2, 3, 1)
    elif array.ndim == 4 and shape[0] == num_items and shape[3] == 3:
        pass
    elif array.ndim == 4 and shape[3] == num_items and shape[2] == 3:
        array = array.transpose(3, 0, 1, 2)
    else:
        raise CrossforgetError(
            f"{source}: image array has shape {shape}; expected {num_items} x 3 x H x W, "
            f"{num_items} x H x W x 3 or H x W x 3 x {num_items} (one image per label row)"
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f" and float(array.max()) <= 1.0:
        array = array * 255.0
    return np.clip(np.rint(array), 0, 255).astype(np.uint8)


def _file_names(array: np.ndarray, source: Path) -> list[str]:
    """``FAll`` as strings: a MATLAB cell array of names or a padded char matrix."""
    if array.dtype == object:
        return [str(np.asarray(cell).squeeze()).strip() for cell in array.ravel()]
    if array.dtype.kind == "U" and array.ndim == 1:
        return [name.strip() for name in array]
    if array.dtype.kind == "U" and array.ndim == 2:
        return ["".join(row).strip() for row in array]
    raise CrossforgetError(f"{source}: FAll holds {array.dtype} data, not file names")


def _binary(array: np.ndarray, source: Path, what: str) -> np.ndarray:
    values = np.asarray(array)
    if values.ndim != 2 or not np.all((values == 0) | (values == 1)):
        raise CrossforgetError(f"{source}: {what} must be a 2-D 0/1 matrix, got shape {values.shape}")
    return values.astype(np.uint8)


@dataclass
class MirFlickrData(TaggedItems):
    """What both MIRFlickr readers produce; ``to_multimodal`` is the common hand-off."""

    labels: np.ndarray
    tags: np.ndarray
    tag_names: list[str]
    images: ImageSource | None
    image_files: list[Path] | None
    skipped: int
    info: dict = field(default_factory=dict)
    class_names: list[str] = field(default_factory=lambda: list(CONCEPTS))
    dataset_name: ClassVar[str] = "mirflickr"


class MirFlickrMat(MirFlickrData):
    """The DCMH cleared set (20,015 items) from ``mirflickr25k-{lall,yall}.mat``.

    Images come from ``image_array`` (an ``IAll`` .mat), else ``mirflickr25k-iall.mat`` in ``root``, else
    the ``FAll`` file names looked up in ``root/mirflickr/``; with none of them ``images`` is None.
    ``tag_vocabulary`` is an optional text file with the 1386 tag words, one per line, in column order.
    """

    def __init__(
        self,
        root: str | Path,
        image_array: str | Path | None = None,
        tag_vocabulary: str | Path | None = None,
        check_images: bool = True,
    ) -> None:
        root = Path(root)
        found = {var: _find_mat(root, var) for var in ("LAll", "YAll")}
        missing = [f"mirflickr25k-{var.lower()}.mat" for var, path in found.items() if path is None]
        if missing:
            raise CrossforgetError(f"MIRFlickr root {root} lacks {', '.join(missing)}; expected {MAT_LAYOUT}")
        labels = _binary(read_mat_variable(found["LAll"], "LAll"), found["LAll"], "LAll")
        tags = _binary(read_mat_variable(found["YAll"], "YAll"), found["YAll"], "YAll")
        if labels.shape[1] != len(CONCEPTS):
            raise CrossforgetError(
                f"{found['LAll']}: LAll has {labels.shape[1]} columns, expected the {len(CONCEPTS)} concepts "
                "without _r1 columns; use the DCMH cleared-set file"
            )
        if labels.shape[0] != tags.shape[0]:
            raise CrossforgetError(
                f"MIRFlickr files disagree: LAll has {labels.shape[0]} rows, YAll {tags.shape[0]}; "
                "take both from the same release"
            )
        tag_names = self._tag_names(tag_vocabulary, tags.shape[1])
        images, image_files, keep, info = self._images(root, image_array, labels.shape[0], check_images)
        info = {"root": str(root), "format": "dcmh-mat", **info}
        super().__init__(
            labels=labels[keep],
            tags=tags[keep],
            tag_names=tag_names,
            images=images,
            image_files=image_files,
            skipped=labels.shape[0] - int(keep.size),
            info=info,
        )
        self.info.update(items=len(self), skipped=self.skipped)

    @staticmethod
    def _tag_names(vocabulary: str | Path | None, num_tags: int) -> list[str]:
        if vocabulary is None:
            return [f"tag{j:04d}" for j in range(num_tags)]
        path = Path(vocabulary)
        if not path.is_file():
            raise CrossforgetError(f"tag vocabulary {path} not found; give a text file with one tag per line")
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(names) != num_tags:
            raise CrossforgetError(
                f"tag vocabulary {path} has {len(names)} tags but YAll has {num_tags} columns; "
                "one tag per line, in column order"
            )
        return names

    @staticmethod
    def _images(
        root: Path, image_array: str | Path | None, num_items: int, check_images: bool
    ) -> tuple[ImageSource | None, list[Path] | None, np.ndarray, dict]:
        """(images, files, kept rows, info) from the first image source that is available."""
        everything = np.arange(num_items)
        array_path = Path(image_array) if image_array is not None else _find_mat(root, "IAll")
        if image_array is not None and not array_path.is_file():
            raise CrossforgetError(
                f"image array {array_path} not found; give the path of mirflickr25k-iall.mat"
            )
        if array_path is not None:
            array = images_to_nhwc(read_mat_variable(array_path, "IAll"), num_items, array_path)
            return ArrayImages(array), None, everything, {"images": f"array {array_path}"}
        names_path = _find_mat(root, "FAll")
        folder = root / "mirflickr"
        if names_path is None or not folder.is_dir():
            reason = (
                "no image modality: put mirflickr25k-iall.mat in the root, pass image_array=..., or add "
                "mirflickr25k-fall.mat plus the mirflickr/ image folder"
            )
            return None, None, everything, {"images": reason}
        names = _file_names(read_mat_variable(names_path, "FAll"), names_path)
        if len(names) != num_items:
            raise CrossforgetError(
                f"{names_path} names {len(names)} images but LAll has {num_items} rows; use the same release"
            )
        paths = [folder / name for name in names]
        present = np.array([p.is_file() for p in paths], dtype=bool)
        if not present.any():
            raise CrossforgetError(
                f"none of the {num_items} images named in {names_path} is in {folder} (e.g. {paths[0]}); "
                "extract the raw mirflickr25k images there"
            )
        keep = np.flatnonzero(present)
        unreadable = unreadable_images([paths[i] for i in keep]) if check_images else []
        keep = np.delete(keep, unreadable)
        info = {
            "images": f"files in {folder}",
            "skipped_missing_images": int(num_items - present.sum()),
            "skipped_unreadable_images": len(unreadable),
        }
        files = [paths[i] for i in keep]
        return FileImages(files), files, keep, info


class MirFlickrRaw(MirFlickrData):
    """The raw MIRFlickr-25K release rebuilt with the DCMH recipe.

    Tags are counted once per image over every image on disk; tags used by at least ``min_tag_count``
    images form the vocabulary (sorted). Images with no concept label or no vocabulary tag are dropped.
    Concept files with the ``_r1`` suffix (the stricter "relevant" annotation) are ignored.
    """

    def __init__(
        self, root: str | Path, min_tag_count: int = MIN_TAG_COUNT, check_images: bool = True
    ) -> None:
        root = Path(root)
        folder, tag_dir, annotation_dir = self._layout(root)
        ids = sorted(
            int(m.group(1)) for e in os.scandir(folder) if (m := re.fullmatch(r"im(\d+)\.jpg", e.name))
        )
        if not ids:
            raise CrossforgetError(
                f"{folder} holds no im<k>.jpg images; extract mirflickr25k.zip into {root}"
            )
        labels, labelled_missing = self._concept_labels(annotation_dir, ids)
        tags, vocabulary = self._tag_matrix(tag_dir, ids, min_tag_count)
        has_label, has_tag = labels.any(axis=1), tags.any(axis=1)
        keep = np.flatnonzero(has_label & has_tag)
        if keep.size == 0:
            raise CrossforgetError(
                f"no image in {folder} has both a concept label and a tag used by >= {min_tag_count} images; "
                "check the annotation folder or lower min_tag_count"
            )
        paths = [folder / f"im{ids[i]}.jpg" for i in keep]
        unreadable = unreadable_images(paths) if check_images else []
        keep = np.delete(keep, unreadable)
        files = [folder / f"im{ids[i]}.jpg" for i in keep]
        info = {
            "root": str(root),
            "format": "raw",
            "tags_from": tag_dir.name,
            "min_tag_count": min_tag_count,
            "images_on_disk": len(ids),
            "skipped_no_label": int((~has_label).sum()),
            "skipped_no_tag": int((has_label & ~has_tag).sum()),
            "skipped_unreadable_images": len(unreadable),
            "labelled_but_missing_on_disk": len(labelled_missing),
        }
        super().__init__(
            labels=labels[keep],
            tags=tags[keep],
            tag_names=vocabulary,
            images=FileImages(files),
            image_files=files,
            skipped=len(ids) - int(keep.size) + len(labelled_missing),
            info=info,
        )
        self.image_ids = [ids[i] for i in keep]
        self.info.update(items=len(self), skipped=self.skipped)

    @staticmethod
    def _layout(root: Path) -> tuple[Path, Path, Path]:
        """(image folder, tag folder, annotation folder); one error names everything missing."""
        folder = root / "mirflickr"
        tag_dir = next(
            (d for d in (folder / "meta" / "tags", folder / "meta" / "tags_raw") if d.is_dir()), None
        )
        annotation_dir = root / "mirflickr25k_annotations_v080"
        expected = [folder, annotation_dir] + [annotation_dir / f"{c}.txt" for c in CONCEPTS]
        missing = [str(p.relative_to(root)) for p in expected if not p.exists()]
        if tag_dir is None:
            missing.append("mirflickr/meta/tags/")
        if missing:
            raise CrossforgetError(f"MIRFlickr root {root} lacks {_short(missing)}; expected {RAW_LAYOUT}")
        return folder, tag_dir, annotation_dir

    @staticmethod
    def _concept_labels(annotation_dir: Path, ids: list[int]) -> tuple[np.ndarray, set[int]]:
        """(labels of the images on disk, ids labelled in the annotations but absent on disk)."""
        row_of = {image_id: row for row, image_id in enumerate(ids)}
        labels = np.zeros((len(ids), len(CONCEPTS)), dtype=np.uint8)
        labelled_missing: set[int] = set()
        for column, concept in enumerate(CONCEPTS):
            for image_id in _read_ids(annotation_dir / f"{concept}.txt"):
                if image_id in row_of:
                    labels[row_of[image_id], column] = 1
                else:
                    labelled_missing.add(image_id)
        return labels, labelled_missing

    @staticmethod
    def _tag_matrix(tag_dir: Path, ids: list[int], min_tag_count: int) -> tuple[np.ndarray, list[str]]:
        """(0/1 tags per image, the sorted vocabulary of tags used by >= ``min_tag_count`` images)."""
        per_image = [_read_tags(tag_dir / f"tags{image_id}.txt") for image_id in ids]
        counts: dict[str, int] = {}
        for image_tags in per_image:
            for tag in image_tags:
                counts[tag] = counts.get(tag, 0) + 1
        vocabulary = sorted(tag for tag, n in counts.items() if n >= min_tag_count)
        column_of = {tag: j for j, tag in enumerate(vocabulary)}
        tags = np.zeros((len(ids), len(vocabulary)), dtype=np.uint8)
        for row, image_tags in enumerate(per_image):
            tags[row, [column_of[t] for t in image_tags if t in column_of]] = 1
        return tags, vocabulary


def _short(items: list[str], show: int = 6) -> str:
    return ", ".join(items[:show]) + (f" (and {len(items) - show} more)" if len(items) > show else "")


def _read_ids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text(encoding="utf-8").split()]
    except ValueError:
        raise CrossforgetError(
            f"{path} must hold one image number per line; re-extract the annotations"
        ) from None


def _read_tags(path: Path) -> list[str]:
    """Distinct lower-case tags of one image, in file order; an absent file means no tags."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return list(dict.fromkeys(t for line in text.splitlines() if (t := line.strip().lower())))


def load_mirflickr(
    root: str | Path,
    image_array: str | Path | None = None,
    tag_vocabulary: str | Path | None = None,
    check_images: bool = True,
) -> MultiModalData:
    """The .mat cleared set when ``mirflickr25k-lall.mat`` is in ``root``, else the raw release."""
    root = Path(root)
    if _find_mat(root, "LAll") is not None or _find_mat(root, "YAll") is not None:
        data: MirFlickrData = MirFlickrMat(root, image_array, tag_vocabulary, check_images)
    elif (root / "mirflickr").is_dir() or (root / "mirflickr25k_annotations_v080").is_dir():
        if image_array is not None or tag_vocabulary is not None:
            raise CrossforgetError(
                "image_array and tag_vocabulary apply to the DCMH .mat files only; the raw MIRFlickr release "
                "brings its own images and tags, so drop those options"
            )
        data = MirFlickrRaw(root, check_images=check_images)
    else:
        raise CrossforgetError(
            f"MIRFlickr root {root} holds neither the DCMH .mat files ({MAT_LAYOUT}) nor the raw release "
            f"({RAW_LAYOUT})"
        )
    return data.to_multimodal()


@register_dataset("mirflickr", "multilabel")
def mirflickr_dataset(
    root: str | None = None,
    image_array: str | None = None,
    tag_vocabulary: str | None = None,
    check_images: bool = True,
) -> MultiModalData:
    """The registry's ``mirflickr``: :func:`load_mirflickr` once ``--data-root`` is given."""
    return load_mirflickr(
        require_root("mirflickr", root),
        image_array=image_array,
        tag_vocabulary=tag_vocabulary,
        check_images=check_images,
    )
