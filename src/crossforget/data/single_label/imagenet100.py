"""ImageNet-100: 100 classes x 150 training images, sampled with a seed from an ImageNet-style tree.

Expected layout: ``root/train/<wnid>/*.JPEG`` and, optionally, ``root/val/<wnid>/*.JPEG`` (the
validation images sorted into class folders). Test images are the chosen classes' ``val`` images
when those folders exist; otherwise a seeded stratified split of the sampled images
(``test_fraction``, recorded in ``info["split"]``).

Class names come from a synset map (``LOC_synset_mapping.txt``, ``synset_words.txt`` or
``words.txt`` in ``root``, or the file given as ``synsets``): "n02107142 Doberman, Doberman pinscher".
A class is named by its first name; every synonym and the WordNet id are accepted as aliases, so
``--forget Doberman`` and ``--forget n02107142`` mean the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.data.container import SingleLabelData
from crossforget.data.registry import register_dataset
from crossforget.data.single_label.imagefolder import (
    _images_only,
    build_single_label,
    class_folders,
    new_skipped,
)

SYNSET_FILES = ("LOC_synset_mapping.txt", "synset_words.txt", "words.txt")


def read_synsets(path: Path) -> dict[str, list[str]]:
    """WordNet id -> names, from lines "<wnid> name, other name" (space or tab after the id)."""
    out = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        wnid, *rest = line.strip().split(None, 1)
        names = [n.strip() for n in "".join(rest).split(",") if n.strip()]
        if not wnid.startswith("n") or not names:
            raise CrossforgetError(
                f"{path}:{number}: expected '<wnid> name, other name', got {line.strip()!r}"
            )
        out[wnid] = names
    return out


def class_naming(wnids: Sequence[str], synsets: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    """Display names (first synonym, or the wnid; repeated names get their wnid appended) and aliases."""
    first = [synsets.get(w, [w])[0] for w in wnids]
    repeated = {n for n in first if first.count(n) > 1}
    names = [f"{n} ({w})" if n in repeated else n for n, w in zip(first, wnids, strict=True)]
    aliases: dict[str, str] = {}
    ambiguous: set[str] = set()
    for wnid, name in zip(wnids, names, strict=True):
        for alias in {wnid, *synsets.get(wnid, [])}:
            key = alias.lower()
            if key in aliases and aliases[key] != name:
                ambiguous.add(key)
            aliases[key] = name
    return names, {k: v for k, v in aliases.items() if k not in ambiguous}


def _synset_file(root: Path, synsets: str | Path | None) -> Path | None:
    if synsets is not None:
        path = Path(synsets).expanduser()
        if not path.is_file():
            raise CrossforgetError(
                f"synset map {path} does not exist; pass a LOC_synset_mapping.txt-style file"
            )
        return path
    return next((root / f for f in SYNSET_FILES if (root / f).is_file()), None)


def _resolve(names: Sequence[str], available: list[str], synsets: dict[str, list[str]]) -> list[str]:
    """WordNet ids of the named classes (by id or any synonym)."""
    lookup: dict[str, set[str]] = {}
    for wnid in available:
        for alias in {wnid, *synsets.get(wnid, [])}:
            lookup.setdefault(alias.lower(), set()).add(wnid)
    out = []
    for name in names:
        found = lookup.get(name.strip().lower(), set())
        if len(found) != 1:
            problem = "matches no class" if not found else f"is ambiguous ({', '.join(sorted(found))})"
            raise CrossforgetError(
                f"{name!r} {problem} of the ImageNet tree; use a WordNet id such as n02107142 "
                "or a name from the synset map"
            )
        out.append(found.pop())
    return out


def _sample(
    folders: dict[str, list[Path]],
    available: list[str],
    wanted: list[str],
    num_classes: int,
    images_per_class: int,
    seed: int,
) -> tuple[list[str], dict[str, list[Path]], dict[str, int]]:
    """(chosen wnids, their sampled training files, classes with fewer images than asked): one stream."""
    rng = np.random.default_rng(seed)
    others = [w for w in available if w not in wanted]
    chosen = sorted(
        wanted
        + [others[i] for i in np.sort(rng.choice(len(others), num_classes - len(wanted), replace=False))]
    )
    train = {}
    short = {}
    for wnid in chosen:
        files = folders[wnid]
        if len(files) < images_per_class:
            short[wnid] = len(files)
        picks = np.sort(rng.choice(len(files), min(images_per_class, len(files)), replace=False))
        train[wnid] = [files[i] for i in picks]
    return chosen, train, short


def _val_split(root: Path, chosen: list[str], skipped: dict) -> dict[str, list[Path]] | None:
    """The chosen classes' images in ``root/val``, or None when there are none (a seeded split then)."""
    if not (root / "val").is_dir():
        return None
    val = {k: _images_only(v, skipped) for k, v in class_folders(root / "val").items()}
    if not any(val.get(w) for w in chosen):
        return None
    return {w: val.get(w, []) for w in chosen}


@register_dataset("imagenet100", "single")
def load_imagenet100(
    root: str | Path,
    num_classes: int = 100,
    images_per_class: int = 150,
    seed: int = 0,
    include: Sequence[str] = (),
    synsets: str | Path | None = None,
    test_fraction: float = 0.2,
) -> SingleLabelData:
    """Sample ``num_classes`` classes (those in ``include`` always) and ``images_per_class`` images each."""
    root = Path(root).expanduser()
    if not (root / "train").is_dir():
        raise CrossforgetError(
            f"{root}/train is missing; expected an ImageNet-style tree root/train/<wnid>/*.JPEG"
        )
    if num_classes < 2 or images_per_class < 1:
        raise CrossforgetError("imagenet100 needs num_classes >= 2 and images_per_class >= 1")
    synset_path = _synset_file(root, synsets)
    synset_map = read_synsets(synset_path) if synset_path else {}
    skipped = new_skipped()
    folders = {k: _images_only(v, skipped) for k, v in class_folders(root / "train").items()}
    empty = sorted(k for k, v in folders.items() if not v)
    skipped["empty_classes"] += empty
    available = sorted(k for k, v in folders.items() if v)
    wanted = list(dict.fromkeys(_resolve(include, available, synset_map)))
    if len(wanted) > num_classes:
        raise CrossforgetError(f"{len(wanted)} classes must be included but num_classes={num_classes}")
    if len(available) < num_classes:
        raise CrossforgetError(
            f"{root}/train has {len(available)} non-empty class folders, fewer than "
            f"num_classes={num_classes}; lower num_classes"
        )
    chosen, train, short = _sample(folders, available, wanted, num_classes, images_per_class, seed)
    test = _val_split(root, chosen, skipped)
    names, aliases = class_naming(chosen, synset_map)
    renamed_train = dict(zip(names, (train[w] for w in chosen), strict=True))
    renamed_test = None if test is None else dict(zip(names, (test[w] for w in chosen), strict=True))
    info = {
        "root": str(root),
        "wnids": chosen,
        "synsets": str(synset_path) if synset_path else None,
        "sampling": {
            "num_classes": num_classes,
            "images_per_class": images_per_class,
            "seed": seed,
            "included": wanted,
            "classes_with_fewer_images": short,
        },
    }
    return build_single_label(
        "imagenet100", names, renamed_train, renamed_test, test_fraction, seed, skipped, info, aliases
    )
