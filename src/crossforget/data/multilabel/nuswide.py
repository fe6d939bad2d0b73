"""NUS-WIDE restricted to its most frequent concepts (21 by default), from the standard release files.

The usual cross-modal hashing protocol (DCMH, DSPH) keeps the 21 concepts with the most positive images
and the items that have at least one of them and at least one of the 1,000 common tags; texts are
those tag words. Concept frequencies are counted over every listed image, before any item is dropped,
and the kept concepts stay in the release's (alphabetical) order; ties go to the earlier concept.

The 0/1 text matrices are large (``AllTags1k.txt`` is 269,648 x 1,000), so they are parsed in blocks
with NumPy instead of line by line in Python.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import FileImages, ImageSource, MultiModalData
from crossforget.data.images import unreadable_images
from crossforget.data.multilabel.tagged import TaggedItems
from crossforget.data.registry import register_dataset, require_root

LAYOUT = (
    "ROOT/ImageList/Imagelist.txt, ROOT/Groundtruth/AllLabels/Labels_<concept>.txt, "
    "ROOT/NUS_WID_Tags/AllTags1k.txt, ROOT/NUS_WID_Tags/TagList1k.txt, optionally "
    "ROOT/ConceptsList/Concepts81.txt and the images in ROOT/Flickr/<concept>/<file>.jpg"
)
NUM_CONCEPTS = 21
_BLOCK_BYTES = 1 << 26
_ZERO, _ONE, _NEWLINE = 48, 49, 10
_TAB, _CR, _SPACE = 9, 13, 32


def _line_blocks(path: Path) -> Iterator[bytes]:
    """Successive byte blocks of whole lines, the last one newline-terminated too."""
    with path.open("rb") as handle:
        carry = b""
        while block := handle.read(_BLOCK_BYTES):
            data = carry + block
            cut = data.rfind(b"\n") + 1
            carry = data[cut:]
            if cut:
                yield data[:cut]
        if carry:
            yield carry + b"\n"


def read_binary_rows(path: Path, columns: int) -> np.ndarray:
    """A text file of whitespace-separated 0/1 values, ``columns`` per line, as a uint8 matrix.

    Trailing blank lines are ignored; any other line with the wrong number of values, or any character
    other than 0, 1 and whitespace, is an error naming the line.
    """
    digits: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    lines_before = 0
    for block in _line_blocks(path):
        buf = np.frombuffer(block, dtype=np.uint8)
        is_digit = (buf == _ZERO) | (buf == _ONE)
        is_newline = buf == _NEWLINE
        allowed = is_digit | is_newline | (buf == _TAB) | (buf == _SPACE) | (buf == _CR)
        if not allowed.all():
            bad = int(np.argmin(allowed))
            line = lines_before + int(is_newline[:bad].sum()) + 1
            raise CrossforgetError(
                f"{path} line {line}: unexpected character {chr(buf[bad])!r}; "
                "the file must hold only 0/1 values"
            )
        ends = np.flatnonzero(is_newline)
        starts = np.concatenate(([0], ends[:-1] + 1))
        counts.append(np.add.reduceat(is_digit, starts, dtype=np.int64))
        digits.append(buf[is_digit] - _ZERO)
        lines_before += ends.size
    per_line = np.concatenate(counts) if counts else np.zeros(0, dtype=np.int64)
    nonblank = np.flatnonzero(per_line)
    per_line = per_line[: nonblank[-1] + 1] if nonblank.size else per_line[:0]
    wrong = np.flatnonzero(per_line != columns)
    if wrong.size:
        line = int(wrong[0])
        raise CrossforgetError(
            f"{path} line {line + 1} has {per_line[line]} values, expected {columns}; the file is damaged"
        )
    values = np.concatenate(digits) if digits else np.zeros(0, dtype=np.uint8)
    return values.reshape(per_line.size, columns)


def image_relpath(line: str) -> str:
    """``C:\\ImageData\\Flickr\\actor\\0001_2.jpg`` or ``actor\\0001_2.jpg`` -> ``actor/0001_2.jpg``."""
    parts = [p for p in line.strip().replace("\\", "/").split("/") if p]
    lowered = [p.lower() for p in parts]
    if "flickr" in lowered:
        parts = parts[len(lowered) - lowered[::-1].index("flickr") :]
    elif parts and parts[0].endswith(":"):
        parts = parts[1:]
    return "/".join(parts)


def _read_lines(path: Path) -> list[str]:
    return [
        s for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if (s := line.strip())
    ]


def _concepts(root: Path, label_dir: Path) -> list[str]:
    """Concept order of the release list when present, else the sorted names of the label files."""
    for listing in (root / "ConceptsList" / "Concepts81.txt", root / "Concepts81.txt"):
        if listing.is_file():
            return _read_lines(listing)
    return sorted(p.name[len("Labels_") : -len(".txt")] for p in label_dir.glob("Labels_*.txt"))


def _concept_matrix(label_dir: Path, concepts: list[str], num_items: int) -> np.ndarray:
    """(items, concepts) 0/1 labels from one ``Labels_<concept>.txt`` column per concept."""
    all_labels = np.empty((num_items, len(concepts)), dtype=np.uint8)
    for j, concept in enumerate(concepts):
        column = read_binary_rows(label_dir / f"Labels_{concept}.txt", 1)
        if column.shape[0] != num_items:
            raise CrossforgetError(
                f"Labels_{concept}.txt has {column.shape[0]} rows but Imagelist.txt lists {num_items} "
                "images; "
                "take both from the same NUS-WIDE release"
            )
        all_labels[:, j] = column[:, 0]
    return all_labels


class NusWide(TaggedItems):
    """Items with >= 1 of the ``num_concepts`` most frequent concepts and >= 1 of the 1k tags.

    With a ``Flickr/`` folder, items whose image is absent (or, with ``check_images``, cannot be opened)
    are dropped too and counted in ``info``; without it ``images`` is None.
    """

    dataset_name = "nuswide"

    def __init__(self, root: str | Path, num_concepts: int = NUM_CONCEPTS, check_images: bool = True) -> None:
        self.root = root = Path(root)
        image_list = root / "ImageList" / "Imagelist.txt"
        label_dir = root / "Groundtruth" / "AllLabels"
        tag_matrix = root / "NUS_WID_Tags" / "AllTags1k.txt"
        tag_list = root / "NUS_WID_Tags" / "TagList1k.txt"
        missing = [
            str(p.relative_to(root)) for p in (image_list, label_dir, tag_matrix, tag_list) if not p.exists()
        ]
        if missing:
            raise CrossforgetError(f"NUS-WIDE root {root} lacks {', '.join(missing)}; expected {LAYOUT}")
        concepts = _concepts(root, label_dir)
        absent = [f"Labels_{c}.txt" for c in concepts if not (label_dir / f"Labels_{c}.txt").is_file()]
        if absent:
            raise CrossforgetError(
                f"{label_dir} lacks {', '.join(absent[:5])}; extract all of Groundtruth.zip"
            )
        if not 1 <= num_concepts <= len(concepts):
            raise CrossforgetError(
                f"num_concepts={num_concepts} but {label_dir} has {len(concepts)} concept label files; "
                f"choose 1..{len(concepts)}"
            )

        relpaths = [image_relpath(line) for line in _read_lines(image_list)]
        num_items = len(relpaths)
        all_labels = _concept_matrix(label_dir, concepts, num_items)
        self.tag_names = _read_lines(tag_list)
        tags = read_binary_rows(tag_matrix, len(self.tag_names))
        if tags.shape[0] != num_items:
            raise CrossforgetError(
                f"AllTags1k.txt has {tags.shape[0]} rows but Imagelist.txt lists {num_items} images; "
                "take both from the same NUS-WIDE release"
            )

        frequency = all_labels.sum(axis=0, dtype=np.int64)
        chosen = np.sort(np.argsort(-frequency, kind="stable")[:num_concepts])
        labels = all_labels[:, chosen]
        has_label, has_tag = labels.any(axis=1), tags.any(axis=1)
        keep = np.flatnonzero(has_label & has_tag)
        self.info: dict = {
            "root": str(root),
            "images_listed": num_items,
            "concept_counts": {concepts[j]: int(frequency[j]) for j in chosen},
            "skipped_no_concept": int((~has_label).sum()),
            "skipped_no_tag": int((has_label & ~has_tag).sum()),
        }
        keep, self.image_files = self._locate_images(keep, relpaths, check_images)
        self.images: ImageSource | None = (
            FileImages(self.image_files) if self.image_files is not None else None
        )
        self.class_names = [concepts[j] for j in chosen]
        self.labels = labels[keep]
        self.tags = tags[keep]
        self.image_paths = [relpaths[i] for i in keep]
        self.skipped = num_items - int(keep.size)
        if keep.size == 0:
            raise CrossforgetError(
                f"no NUS-WIDE item in {root} has both a kept concept and a tag; check the files"
            )
        self.info.update(items=int(keep.size), skipped=self.skipped)

    def _locate_images(
        self, keep: np.ndarray, relpaths: list[str], check_images: bool
    ) -> tuple[np.ndarray, list[Path] | None]:
        folder = self.root / "Flickr"
        if not folder.is_dir():
            self.info["images"] = (
                f"no image modality: {folder} not found (images are requested from the NUS team)"
            )
            return keep, None
        # The list was written on Windows; match case-insensitively so a re-cased folder still works.
        on_disk: dict[str, Path] = {}
        for directory, _, files in os.walk(folder):
            for name in files:
                path = Path(directory, name)
                on_disk[path.relative_to(folder).as_posix().lower()] = path
        found = [on_disk.get(relpaths[i].lower()) for i in keep]
        present = np.array([p is not None for p in found], dtype=bool)
        if keep.size and not present.any():
            raise CrossforgetError(
                f"none of the images listed in Imagelist.txt is under {folder} "
                f"(e.g. {folder / relpaths[keep[0]]}); "
                "extract the image archive so that Flickr/<concept>/<file>.jpg exists"
            )
        files = [p for p in found if p is not None]
        unreadable = unreadable_images(files) if check_images else []
        keep = np.delete(keep[present], unreadable)
        files = [files[k] for k in np.delete(np.arange(len(files)), unreadable)]
        self.info.update(
            images=f"files in {folder}",
            skipped_missing_image=int((~present).sum()),
            skipped_unreadable_image=len(unreadable),
        )
        return keep, files


def load_nuswide(
    root: str | Path, num_concepts: int = NUM_CONCEPTS, check_images: bool = True
) -> MultiModalData:
    """``NusWide(...).to_multimodal()``: the form the dataset registry calls."""
    return NusWide(root, num_concepts=num_concepts, check_images=check_images).to_multimodal()


@register_dataset("nuswide", "multilabel")
def nuswide_dataset(
    root: str | None = None, num_concepts: int = NUM_CONCEPTS, check_images: bool = True
) -> MultiModalData:
    """The registry's ``nuswide``: :func:`load_nuswide` once ``--data-root`` is given."""
    return load_nuswide(require_root("nuswide", root), num_concepts=num_concepts, check_images=check_images)
