"""Classifiers for the classification track: training, checkpoints, evaluation and the task binding.

Mirrors ``hashing_task`` for image classifiers, so the same PPP and SSD code (and every other
registered method) runs on them: the loss is cross-entropy, prototypes are class means of the
penultimate features, batches are {"images", "labels" (class indices)}.

Optimisers: the Original (and Retrain, from scratch) use ``ClassifierRecipe`` (SGD with momentum,
warm-up then cosine). Finetune continues with SGD lr 0.02, momentum 0.9, weight decay 5e-4 at a
constant rate (the SSD reference settings); relabelled training (Amnesiac) uses Adam at the
method's learning rate (1e-4 by default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crossforget import __version__
from crossforget.core import distributed
from crossforget.core.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.core.progress import progress_bar
from crossforget.core.reproducibility import environment_stamp, seed_everything
from crossforget.data.container import SingleLabelData
from crossforget.engine.training import warmup_cosine
from crossforget.losses.base import Batch
from crossforget.losses.classification import CrossEntropyLoss, kl_to_teacher
from crossforget.metrics.classification import forget_mask, forget_retain_accuracy
from crossforget.metrics.mia import ShadowAttack, entropy_mia, shadow_halves
from crossforget.models.classifier import (
    ImageClassifier,
    ImagePreprocessor,
    build_classifier,
    head_parameter_names,
)
from crossforget.models.inputs import augment_images
from crossforget.tasks.classification.probe import classification_probe
from crossforget.unlearning.fisher import diagonal_fisher
from crossforget.unlearning.methods.base import UnlearningTask, stored_fisher_record
from crossforget.unlearning.prototypes import class_prototypes

KIND = "classifier"
STORED_FISHER_BATCH = 32
FINETUNE_LR, FINETUNE_MOMENTUM, FINETUNE_WEIGHT_DECAY = 0.02, 0.9, 5e-4
EVAL_BATCH = 256


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


class ImageStore:
    """A dataset's images at the model's input size, decoded once when they fit in ``memory_budget``."""

    def __init__(self, data: SingleLabelData, preprocessor: ImagePreprocessor, memory_budget: int = 4 << 30):
        self.preprocessor = preprocessor
        self.images = data.images
        size = preprocessor.image_size
        self.pixels: torch.Tensor | None = None
        if len(data) * size * size * 3 <= memory_budget:
            self.pixels = torch.from_numpy(np.ascontiguousarray(self.images.load(range(len(data)), size)))
        self.targets = torch.from_numpy(data.targets)
        self.one_hot = torch.from_numpy(data.one_hot().astype(np.float32))

    def __len__(self) -> int:
        return int(self.targets.numel())

    def batch(self, indices: torch.Tensor, targets: torch.Tensor | None = None) -> Batch:
        """``targets`` overrides the true classes (relabelled training)."""
        if self.pixels is not None:
            pixels = self.pixels[indices]
        else:
            pixels = torch.from_numpy(self.images.load(indices.tolist(), self.preprocessor.image_size))
        labels = self.targets[indices] if targets is None else targets
        return {"images": self.preprocessor.images(pixels), "labels": labels}


def classifier_batches(
    store: ImageStore,
    indices: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    augment: bool = False,
    targets: torch.Tensor | None = None,
    shard: tuple[int, int] | None = None,
) -> Iterator[Batch]:
    """Mini-batches over ``indices`` in their order (or shuffled); ``targets`` aligns with ``indices``.

    ``shard`` = (rank, world size): only that rank's rows of each batch, augmented as in one process.
    """
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    order = torch.randperm(idx.numel(), generator=generator) if shuffle else torch.arange(idx.numel())
    for start in range(0, idx.numel(), batch_size):
        chunk = order[start : start + batch_size]
        part = slice(None) if shard is None else distributed.shard_slice(chunk.numel(), shard)
        batch = store.batch(idx[chunk[part]], None if targets is None else targets[chunk[part]])
        if augment:
            rows = None if shard is None else (part, chunk.numel())
            batch["images"] = augment_images(batch["images"], generator, rows=rows)
        yield batch


def train_loop(
    model: nn.Module,
    store: ImageStore,
    indices: np.ndarray,
    recipe: ClassifierRecipe,
    seed: int,
    targets: torch.Tensor | None = None,
    description: str = "training",
    show_progress: bool = True,
) -> list[float]:
    """Train ``model`` in place with cross-entropy; returns the mean loss per epoch."""
    if len(indices) == 0:
        raise CrossforgetError("no training samples; check the split and the forget request")
    generator = seed_everything(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimiser == "sgd":
        optimiser: torch.optim.Optimizer = torch.optim.SGD(
            params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay
        )
    else:
        optimiser = torch.optim.Adam(params, lr=recipe.lr)
    loss_fn = CrossEntropyLoss()
    total = math.ceil(len(indices) / recipe.batch_size) * recipe.epochs
    warmup = int(recipe.warmup_fraction * total) if recipe.schedule == "cosine" else 0
    history: list[float] = []
    step = 0
    model.train()
    # Under torchrun: DDP, this rank's rows of each global batch, the loss of the global batch.
    replica = distributed.TrainingReplica(model) if distributed.is_active() else None
    with progress_bar(description, total=recipe.epochs, enabled=show_progress) as bar:
        for _ in range(recipe.epochs):
            running, batches = 0.0, 0
            for batch in classifier_batches(
                store,
                indices,
                recipe.batch_size,
                shuffle=True,
                generator=generator,
                augment=recipe.augment,
                targets=targets,
                shard=replica.position if replica is not None else None,
            ):
                scale = warmup_cosine(step, total, warmup) if recipe.schedule == "cosine" else 1.0
                for group in optimiser.param_groups:
                    group["lr"] = recipe.lr * scale
                value = loss_fn(model, batch) if replica is None else replica.loss(loss_fn, batch)
                optimiser.zero_grad(set_to_none=True)
                value.backward()
                optimiser.step()
                running += float(value.detach())
                batches += 1
                step += 1
            history.append(running / max(1, batches))
            bar.advance(1, status=f"loss {history[-1]:.4f}")
    if replica is not None:
        replica.close()
    model.eval()
    return history


@torch.no_grad()
def predict(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    """Logits (n, C) in eval mode (under torchrun: each rank a block of whole batches, gathered)."""
    model.eval()
    if distributed.is_active():
        local = distributed.shard_batches(indices, EVAL_BATCH)
        out = [model(b["images"]) for b in classifier_batches(store, local, EVAL_BATCH)]
        return distributed.gather_rows(torch.cat(out) if out else torch.empty(0, model.num_classes))
    out = [model(b["images"]) for b in classifier_batches(store, indices, EVAL_BATCH)]
    return torch.cat(out) if out else torch.empty(0, model.num_classes)


@torch.no_grad()
def penultimate_features(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    model.eval()
    if distributed.is_active():
        local = distributed.shard_batches(indices, EVAL_BATCH)
        out = [model.features(b["images"]) for b in classifier_batches(store, local, EVAL_BATCH)]
        return distributed.gather_rows(torch.cat(out) if out else None)
    return torch.cat([model.features(b["images"]) for b in classifier_batches(store, indices, EVAL_BATCH)])


@dataclass
class ClassifierCheckpoint:
    """A trained (or unlearned) classifier with its preprocessing, config and Eq. 2 prototypes."""

    model: ImageClassifier
    preprocessor: ImagePreprocessor
    config: dict
    prototypes: torch.Tensor | None = None
    fisher: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return list(self.config["class_names"])

    @property
    def recipe(self) -> ClassifierRecipe:
        return ClassifierRecipe.from_dict(self.config["training"]["recipe"])


def make_store(data: SingleLabelData, model_config: dict) -> ImageStore:
    return ImageStore(data, ImagePreprocessor.from_config(model_config))


def compute_prototypes(model: ImageClassifier, store: ImageStore, indices: np.ndarray) -> torch.Tensor:
    """Class means of the penultimate features over ``indices`` (NaN rows for classes without samples)."""
    return class_prototypes(
        penultimate_features(model, store, indices), store.one_hot[torch.as_tensor(indices)]
    )


def train_classifier(
    data: SingleLabelData,
    store: ImageStore,
    model_config: dict,
    recipe: ClassifierRecipe,
    seed: int,
    exclude: Sequence[int] = (),
    indices: np.ndarray | None = None,
    description: str = "train",
    show_progress: bool = True,
) -> ClassifierCheckpoint:
    """Train from scratch on ``indices`` (default: the train split minus the ``exclude`` classes)."""
    if indices is None:
        indices = forget_split(data, exclude)[1] if exclude else data.train
    seed_everything(seed)
    model, preprocessor = build_classifier(model_config)
    started = time.perf_counter()
    history = train_loop(
        model, store, indices, recipe, seed, description=description, show_progress=show_progress
    )
    seconds = time.perf_counter() - started
    config = {
        "model": model_config,
        "class_names": list(data.class_names),
        "dataset": {"name": data.name, "fingerprint": data.info.get("fingerprint")},
        "training": {
            "recipe": recipe.to_dict(),
            "seed": seed,
            "excluded_classes": [data.class_names[c] for c in exclude],
            "num_train_samples": int(len(indices)),
            "loss_history": history,
            "seconds": seconds,
            "world_size": distributed.world_size(),
            "per_rank_batch_size": distributed.per_rank_batch_size(recipe.batch_size),
        },
        "environment": environment_stamp(),
    }
    return ClassifierCheckpoint(model, preprocessor, config, compute_prototypes(model, store, indices))


def save_classifier_checkpoint(path: str | Path, saved: ClassifierCheckpoint) -> Path:
    extras: dict[str, dict[str, torch.Tensor]] = {}
    if saved.prototypes is not None:
        extras["prototypes"] = {"features": saved.prototypes}
    if saved.fisher:
        extras["fisher"] = saved.fisher
    config = dict(saved.config, kind=KIND)
    return save_checkpoint(path, Checkpoint(config, dict(saved.model.state_dict()), {}, extras))


def load_classifier_checkpoint(path: str | Path) -> ClassifierCheckpoint:
    raw = load_checkpoint(path)
    if raw.config.get("kind") != KIND:
        raise CrossforgetError(f"{path} holds a {raw.config.get('kind')!r} checkpoint, not a classifier")
    model, preprocessor = build_classifier(raw.config["model"], load_pretrained=False)
    try:
        model.load_state_dict(raw.model_state, strict=True)
    except RuntimeError as exc:
        raise CrossforgetError(
            f"{Path(path) / 'weights.safetensors'} does not fit its config: {exc}"
        ) from exc
    model.eval()
    prototypes = raw.extras.get("prototypes", {}).get("features")
    return ClassifierCheckpoint(model, preprocessor, raw.config, prototypes, raw.extras.get("fisher", {}))


def cache_key(description: dict) -> str:
    """A short hash of everything that changes a trained model."""
    return hashlib.sha256(
        json.dumps({**description, "version": __version__}, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]


def cached(folder: Path, build: Callable[[], ClassifierCheckpoint]) -> tuple[ClassifierCheckpoint, bool]:
    """Load the checkpoint in ``folder``, or build it with ``build()`` and store it there."""
    found = None
    if (folder / "config.json").is_file():
        with contextlib.suppress(CrossforgetError):  # a damaged cache entry is rebuilt
            found = load_classifier_checkpoint(folder)
    # Under torchrun every rank must take the same branch (building trains on all of them).
    usable = f"whether cache entry {folder} is usable (give every node the same cache folder)"
    if distributed.agree(found is not None, usable) and found is not None:
        return found, True
    saved = build()
    save_classifier_checkpoint(folder, saved)
    return saved, False


# --- binding to the method protocol ---------------------------------------------------------------


def _fit(
    saved: ClassifierCheckpoint,
    store: ImageStore,
    model: nn.Module,
    indices: np.ndarray,
    epochs: int,
    seed: int,
    fresh_loss: bool,
    lr_scale: float,
) -> CrossEntropyLoss:
    """From scratch (``fresh_loss``, Retrain): the Original's recipe; otherwise Finetune's SGD settings."""
    if fresh_loss:
        recipe = dataclasses.replace(saved.recipe, epochs=epochs, lr=saved.recipe.lr * lr_scale)
    else:
        recipe = dataclasses.replace(
            saved.recipe,
            epochs=epochs,
            optimiser="sgd",
            lr=FINETUNE_LR * lr_scale,
            momentum=FINETUNE_MOMENTUM,
            weight_decay=FINETUNE_WEIGHT_DECAY,
            schedule="constant",
        )
    train_loop(
        model,
        store,
        indices,
        recipe,
        seed,
        description="retrain" if fresh_loss else "finetune",
        show_progress=False,
    )
    return CrossEntropyLoss()


def _fit_relabelled(
    saved: ClassifierCheckpoint,
    store: ImageStore,
    model: nn.Module,
    indices: np.ndarray,
    labels: torch.Tensor,
    epochs: int,
    seed: int,
    lr: float,
    batch_size: int,
) -> None:
    """Adam at ``lr`` on ``indices`` with the classes given by the rows of ``labels`` (one-hot)."""
    if labels.shape[0] != len(indices) or not bool((labels.sum(dim=1) == 1).all()):
        raise CrossforgetError("relabelled training needs exactly one class per sample, one row per index")
    recipe = dataclasses.replace(
        saved.recipe, epochs=epochs, optimiser="adam", lr=lr, batch_size=batch_size, schedule="constant"
    )
    train_loop(
        model,
        store,
        indices,
        recipe,
        seed,
        targets=labels.argmax(dim=1),
        description="relabelled",
        show_progress=False,
    )


def _fresh(saved: ClassifierCheckpoint, seed: int) -> nn.Module:
    seed_everything(seed)
    model, _ = build_classifier(saved.config["model"])
    model.eval()
    return model


def _random(saved: ClassifierCheckpoint, seed: int) -> nn.Module:
    """The architecture with random weights everywhere, pretrained backbone or not (SPEC section 5)."""
    seed_everything(seed)
    model, _ = build_classifier(saved.config["model"], load_pretrained=False)
    model.eval()
    return model


def _reinit_names(saved: ClassifierCheckpoint, model: nn.Module) -> list[str]:
    """Bad model re-initialises what was trained from scratch: the head only on a pretrained backbone."""
    if saved.config["model"].get("pretrained"):
        return head_parameter_names(model)
    return list(model.state_dict())


def _prototypes(
    saved: ClassifierCheckpoint, store: ImageStore, train: np.ndarray, modality: str
) -> torch.Tensor:
    """Class means of penultimate features; classifiers have one modality, so ``modality`` is ignored."""
    if saved.prototypes is None:
        saved.prototypes = compute_prototypes(saved.model, store, train)
    return saved.prototypes


def _outputs(model: nn.Module, batch: Batch) -> torch.Tensor:
    return model(batch["images"])


def forget_split(data: SingleLabelData, forget_classes: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(D_f, D_r) on the training split."""
    mask = forget_mask(torch.from_numpy(data.targets[data.train]), forget_classes).numpy()
    return data.train[mask], data.train[~mask]


def classification_task(
    saved: ClassifierCheckpoint, data: SingleLabelData, store: ImageStore, forget_classes: Sequence[int]
) -> UnlearningTask:
    train_forget, train_retain = forget_split(data, forget_classes)
    if train_forget.size == 0:
        names = ", ".join(data.class_names[c] for c in forget_classes)
        raise CrossforgetError(f"no training image of {names}; nothing to forget")
    return UnlearningTask(
        loss=CrossEntropyLoss(),
        batches=lambda indices, size: classifier_batches(store, indices, size),
        labels=store.one_hot,
        train_forget=train_forget,
        train_retain=train_retain,
        forget_classes=list(forget_classes),
        class_names=list(data.class_names),
        fit=partial(_fit, saved, store),
        fresh_model=partial(_fresh, saved),
        reinit_names=partial(_reinit_names, saved),
        prototypes=partial(_prototypes, saved, store, data.train),
        stored_fisher=saved.fisher or None,
        stored_fisher_info=stored_fisher_record(saved.config, saved.fisher),
        training_epochs=saved.recipe.epochs,
        outputs=_outputs,
        distillation_loss=kl_to_teacher,
        fit_relabelled=partial(_fit_relabelled, saved, store),
        random_model=partial(_random, saved),
        probe=classification_probe(
            lambda model, indices: predict(model, store, indices),
            data.targets,
            data.train,
            forget_classes,
            seed=int(saved.config.get("training", {}).get("seed", 0)),
        ),
    )


def attach_full_fisher(saved: ClassifierCheckpoint, store: ImageStore, indices: np.ndarray) -> None:
    """Store the full-training-set Fisher (batch estimator) so SSD skips that pass on every seed."""
    sharded = distributed.is_active()  # under torchrun: a block of whole batches per rank
    local = distributed.shard_batches(indices, STORED_FISHER_BATCH) if sharded else indices
    saved.fisher = diagonal_fisher(
        saved.model,
        CrossEntropyLoss(),
        classifier_batches(store, local, STORED_FISHER_BATCH),
        estimator="batch",
        sharded=sharded,
    )
    saved.config["stored_fisher"] = {
        "estimator": "batch",
        "batch_size": STORED_FISHER_BATCH,
        "samples": int(len(indices)),
    }


# --- evaluation -----------------------------------------------------------------------------------


def evaluate_classifier(
    model: ImageClassifier,
    store: ImageStore,
    data: SingleLabelData,
    forget_classes: Sequence[int],
    shadow: ShadowAttack | None = None,
) -> dict:
    """Table 1's numbers for one model, all in [0, 1].

    ``forget_acc`` / ``retain_acc``: test-split accuracy on the forget classes (D_f) and the others
    (D_r), as in the SSD code; the ``*_train`` variants use the training split. ``mia``: the entropy
    attack's mean membership of the forget training samples; ``mia_shadow``: the shadow-model attack's.
    """
    train_forget, train_retain = forget_split(data, forget_classes)
    logits_train = predict(model, store, data.train)
    logits_test = predict(model, store, data.test)
    rows_forget = torch.from_numpy(np.searchsorted(data.train, train_forget))  # data.train is sorted
    rows_retain = torch.from_numpy(np.searchsorted(data.train, train_retain))
    test = forget_retain_accuracy(logits_test, store.targets[torch.from_numpy(data.test)], forget_classes)
    train = forget_retain_accuracy(logits_train, store.targets[torch.from_numpy(data.train)], forget_classes)
    result = {
        "forget_acc": test["forget"],
        "retain_acc": test["retain"],
        "forget_acc_train": train["forget"],
        "retain_acc_train": train["retain"],
        "mia": entropy_mia(logits_train[rows_retain], logits_test, logits_train[rows_forget]),
    }
    if shadow is not None:
        result["mia_shadow"] = shadow.membership(
            logits_train[rows_forget], store.targets[torch.from_numpy(train_forget)]
        )
    return result


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
            shadow, was_cached = cached(cache_dir / f"shadow{number}-{cache_key(description)}", build)
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
