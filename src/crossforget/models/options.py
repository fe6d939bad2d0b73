"""The ``--model-option`` keys each backbone takes, with their types and ranges (no torch import).

Checked when the options are read, so ``cnn_width=0`` or ``dropout=2`` is a one-line error before any
data is loaded, and an unknown key is refused instead of being stored in the checkpoint unused.
"""

from __future__ import annotations

import math

from crossforget.core.errors import CrossforgetError

# key -> (smallest whole number allowed) for sizes; "dropout" is a probability in [0, 1).
_SIZES = {"cnn_width": 1, "feature_dim": 1, "embed_dim": 1, "image_size": 8, "max_text_length": 2}
BACKBONE_OPTIONS = {
    "small": ("cnn_width", "feature_dim", "embed_dim", "dropout", "image_size"),
    "clip": ("dropout", "max_text_length"),
    "clip-features": ("dropout",),
}
# Set from their own flags (--backbone, --clip-model, --features), not from --model-option.
_FROM_FLAGS = ("backbone", "clip_model", "features")


def check_model_options(options: dict) -> None:
    """Refuse unknown keys for the chosen backbone and values of the wrong type or range."""
    backbone = options.get("backbone", "small")
    if backbone not in BACKBONE_OPTIONS:
        raise CrossforgetError(f"unknown backbone {backbone!r}; choose one of: {', '.join(BACKBONE_OPTIONS)}")
    valid = BACKBONE_OPTIONS[backbone]
    unknown = sorted(set(options) - set(valid) - set(_FROM_FLAGS))
    if unknown:
        raise CrossforgetError(
            f"the {backbone} backbone takes no --model-option {unknown}; it takes {', '.join(valid)}"
        )
    for key in valid:
        if key not in options:
            continue
        value = options[key]
        if key == "dropout":
            number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
            if not number or not 0 <= value < 1:
                raise CrossforgetError(
                    f"--model-option dropout={value!r} must be a number in [0, 1), e.g. 0.2"
                )
        elif isinstance(value, bool) or not isinstance(value, int) or value < _SIZES[key]:
            raise CrossforgetError(f"--model-option {key}={value!r} must be a whole number >= {_SIZES[key]}")
