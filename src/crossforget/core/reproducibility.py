"""Seeds and version stamps, so that every result file says how to reproduce it."""

from __future__ import annotations

import platform
import random
from typing import Any

import numpy as np
import torch

from crossforget import __version__
from crossforget.core.distributed import world_size


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def environment_stamp() -> dict[str, Any]:
    """Versions of the pieces that change numbers, and the number of processes (torchrun ranks)."""
    stamp = {
        "crossforget": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "world_size": world_size(),
    }
    try:
        import transformers

        stamp["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        pass
    return stamp
