"""Digest of the numbers in a results.json, to show that a refactor changed none of them.

A refactor must leave every result identical (same seed, same thread count), but a results file also
holds wall-clock timings, the environment stamp, whether an entry came from a cache and the paths it
read. This script drops exactly those, writes the rest as canonical JSON (sorted keys, floats as
``repr``) and prints its SHA-256; ``--diff`` lists the paths whose values differ between two files.

    python scripts/numbers_digest.py runs/demo/results.json
    python scripts/numbers_digest.py --diff before/results.json after/results.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

IGNORED_KEYS = {"timings", "environment", "seconds", "cached", "checkpoint", "cache"}
RUN_SUFFIXES = ("_seconds", "_timings")


def numbers_only(value: Any) -> Any:
    """The value without the keys that describe a run rather than its results."""
    if isinstance(value, dict):
        kept = {k: v for k, v in value.items() if k not in IGNORED_KEYS and not k.endswith(RUN_SUFFIXES)}
        return {k: numbers_only(v) for k, v in kept.items()}
    if isinstance(value, list):
        return [numbers_only(v) for v in value]
    return value


def canonical(value: Any) -> str:
    return json.dumps(numbers_only(value), sort_keys=True, separators=(",", ":"))


def digest(path: Path) -> str:
    return hashlib.sha256(canonical(json.loads(path.read_text())).encode()).hexdigest()


def leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from leaves(value[key], f"{prefix}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from leaves(item, f"{prefix}[{i}]")
    else:
        yield prefix or ".", value


def differences(a: Path, b: Path) -> list[str]:
    # compared as their JSON text, so that NaN equals NaN (a metric of an empty set is NaN on both sides)
    left = {k: json.dumps(v) for k, v in leaves(numbers_only(json.loads(a.read_text())))}
    right = {k: json.dumps(v) for k, v in leaves(numbers_only(json.loads(b.read_text())))}
    return [
        f"{key}: {left.get(key, '<missing>')} != {right.get(key, '<missing>')}"
        for key in sorted(set(left) | set(right))
        if left.get(key, "<missing>") != right.get(key, "<missing>")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="results.json files")
    parser.add_argument("--diff", action="store_true", help="list the differing values of two files")
    args = parser.parse_args(argv)
    if args.diff:
        if len(args.files) != 2:
            parser.error("--diff takes exactly two files")
        found = differences(*args.files)
        print("\n".join(found) if found else "identical numbers")
        return 1 if found else 0
    for path in args.files:
        print(f"{digest(path)}  {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
