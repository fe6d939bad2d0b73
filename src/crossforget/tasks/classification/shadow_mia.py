"""The shadow-model membership attack of Table 1: two shadow classifiers on halves of the test split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from crossforget.data.container import SingleLabelData
from crossforget.engine.reference_cache import cache_key, cached_reference
from crossforget.metrics.mia import ShadowAttack, shadow_halves
from crossforget.tasks.classification.checkpoint import (
    ClassifierCheckpoint,
    load_classifier_checkpoint,
    save_classifier_checkpoint,
)
from crossforget.tasks.classification.evaluation import predict
from crossforget.tasks.classification.recipe import ClassifierRecipe
from crossforget.tasks.classification.store import ImageStore
from crossforget.tasks.classification.training import train_classifier


def train_shadow_attack(
    data: SingleLabelData,
    store: ImageStore,
    model_config: dict,
    recipe: ClassifierRecipe,
    seed: int,
    cache_dir: Path | None = None,
) -> tuple[ShadowAttack, dict]:
    """Two shadow models on the two halves of the test split (each half is the other's non-members).

    The attacker is assumed to hold data from the target's distribution that the target never saw:
    the test split. Each shadow model is trained with the target's recipe (cached like the references).
    """
    halves = shadow_halves(data.test, data.targets[data.test], seed)
    in_logits, in_targets, out_logits, out_targets, info = [], [], [], [], {}
    for number, (members, others) in enumerate((halves, halves[::-1])):
        description = {
            "role": f"shadow-{number}",
            "dataset": data.info.get("fingerprint"),
            "model": model_config,
            "recipe": recipe.to_dict(),
            "seed": seed + number,
            "members": int(members.size),
        }

        def build(members: np.ndarray = members, number: int = number) -> ClassifierCheckpoint:
            return train_classifier(
                data,
                store,
                model_config,
                recipe,
                seed + number,
                indices=members,
                description=f"shadow model {number + 1}",
                show_progress=False,
            )

        if cache_dir is None:
            shadow, was_cached = build(), False
        else:
            folder = cache_dir / f"shadow{number}-{cache_key(description)}"
            shadow, was_cached = cached_reference(
                folder, load_classifier_checkpoint, save_classifier_checkpoint, build
            )
        in_logits.append(predict(shadow.model, store, members))
        out_logits.append(predict(shadow.model, store, others))
        in_targets.append(store.targets[torch.from_numpy(members)])
        out_targets.append(store.targets[torch.from_numpy(others)])
        info[f"shadow{number}"] = {
            "members": int(members.size),
            "cached": was_cached,
            "seconds": shadow.config["training"]["seconds"],
        }
    attack = ShadowAttack.fit(
        torch.cat(in_logits), torch.cat(in_targets), torch.cat(out_logits), torch.cat(out_targets)
    )
    return attack, info
