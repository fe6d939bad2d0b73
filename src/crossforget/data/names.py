"""Class names given by a user (``include``, ``--forget``) resolved to indices, one way for every loader."""

from __future__ import annotations

from collections.abc import Sequence

from crossforget.core.errors import CrossforgetError


def name_indices(
    names: Sequence[str], valid: Sequence[str], source: str, noun: str = "class", nouns: str = "classes"
) -> list[int]:
    """Indices into ``valid`` of ``names`` in the order given (case-insensitive, outer spaces ignored).

    An unknown name raises ``"<noun> 'x' is not in <source>; valid <nouns>: ..."`` listing ``valid``.
    """
    lookup = {v.lower(): i for i, v in enumerate(valid)}
    indices = []
    for name in names:
        key = name.strip().lower()
        if key not in lookup:
            raise CrossforgetError(f"{noun} {name!r} is not in {source}; valid {nouns}: {', '.join(valid)}")
        indices.append(lookup[key])
    return indices
