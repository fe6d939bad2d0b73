"""How a classifier is trained: the Original's recipe and the fixed settings of Finetune.

The Original (and Retrain, from scratch) use ``ClassifierRecipe`` (SGD with momentum, warm-up then
cosine). Finetune continues with SGD lr 0.02, momentum 0.9, weight decay 5e-4 at a constant rate (the
SSD reference settings); relabelled training (Amnesiac) uses Adam at the method's learning rate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from crossforget.core.errors import CrossforgetError

FINETUNE_LR, FINETUNE_MOMENTUM, FINETUNE_WEIGHT_DECAY = 0.02, 0.9, 5e-4


@dataclass
class ClassifierRecipe:
    """How a classifier is trained. The defaults train ``resnet-small`` on ``scenes-single`` in ~1 min.

    ``schedule``: "cosine" (linear warm-up over ``warmup_fraction`` of the steps, then cosine decay)
    or "constant". ``optimiser``: "sgd" (with momentum and weight decay) or "adam" (no weight decay).
    """

    epochs: int = 8
    batch_size: int = 128
    optimiser: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_fraction: float = 0.1
    augment: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise CrossforgetError("training needs epochs >= 1, batch size >= 1 and a positive learning rate")
        if self.optimiser not in ("sgd", "adam") or self.schedule not in ("cosine", "constant"):
            raise CrossforgetError("optimiser must be sgd or adam, schedule cosine or constant")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> ClassifierRecipe:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})
