"""Programs the distributed tests run on 1 process and on 2 gloo processes (torch.multiprocessing).

``run_ranks(program, world, ...)`` starts ``world`` processes in one gloo group (file rendezvous in a
temporary folder, so no port is needed), runs ``program(rank, **kwargs)`` on each and returns their
results in rank order; with ``world=1`` the program runs in the calling process without a group.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from crossforget.data.container import ArrayImages, MultiModalData
from crossforget.losses.dsph import DSPHLoss
from crossforget.models.factory import build_hasher
from crossforget.models.inputs import TensorStore, iterate_batches
from crossforget.models.tokenizer import WordTokenizer

ITEMS = 17  # with batch 8: batches of 8, 8 and 1, so one rank gets no row of the last batch


def _child(rank: int, world: int, folder: str, program: Callable, kwargs: dict) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    try:
        result: object = program(rank, **kwargs)
    except BaseException as exc:  # reported to the parent, which raises it
        result = RuntimeError(f"rank {rank}: {exc!r}\n{traceback.format_exc()}")
    finally:
        dist.destroy_process_group()
    with open(os.path.join(folder, f"rank{rank}.pkl"), "wb") as handle:
        pickle.dump(result, handle)


def run_ranks(program: Callable, world: int, **kwargs: object) -> list:
    """Each rank's ``program(rank, **kwargs)``, in rank order."""
    if world == 1:
        return [program(0, **kwargs)]
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(_child, args=(world, folder, program, kwargs), nprocs=world, start_method="spawn")
        results = []
        for rank in range(world):
            with open(Path(folder) / f"rank{rank}.pkl", "rb") as handle:
                results.append(pickle.load(handle))
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def toy() -> tuple[TensorStore, dict]:
    """17 multi-label items (so DSPH's pair regulariser is active), two captions each, 16 px images."""
    rng = np.random.default_rng(0)
    labels = np.zeros((ITEMS, 4), dtype=np.uint8)
    labels[np.arange(ITEMS), np.arange(ITEMS) % 4] = 1
    labels[np.arange(0, ITEMS, 3), (np.arange(0, ITEMS, 3) + 1) % 4] = 1
    images = rng.integers(0, 255, (ITEMS, 16, 16, 3), dtype=np.uint8)
    names = ["red", "green", "blue", "grey"]
    captions = [[" ".join(names[c] for c in np.flatnonzero(row)), f"a {names[int(np.argmax(row))]} one"]
                for row in labels]  # fmt: skip
    data = MultiModalData("toy", names, labels, captions, ArrayImages(images))
    config = {
        "backbone": "small",
        "bits": 16,
        "image_size": 16,
        "cnn_width": 4,
        "feature_dim": 16,
        "embed_dim": 8,
        "dropout": 0.2,
        "tokenizer": WordTokenizer.build(c for caps in captions for c in caps).to_config(),
    }
    _, pre = build_hasher(config)
    return TensorStore(data, pre), config


def _model(config: dict, seed: int = 0) -> tuple[torch.nn.Module, DSPHLoss]:
    torch.manual_seed(seed)
    model, _ = build_hasher(config)
    return model, DSPHLoss(4, 16)


def training_program(rank: int, epochs: int = 1, twice: bool = False) -> dict:
    """``epochs`` of the training loop (3 steps per epoch: 8, 8 and 1 items); ``twice`` trains again."""
    from crossforget.engine.training import TrainingRecipe, train_model

    store, config = toy()
    model, loss = _model(config)
    recipe = TrainingRecipe(epochs=epochs, batch_size=8, warmup_fraction=0.34)
    history = train_model(model, loss, store, np.arange(ITEMS), recipe, seed=3, show_progress=False)
    if twice:
        history += train_model(model, loss, store, np.arange(ITEMS), recipe, seed=4, show_progress=False)
    return {
        "history": history,
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "proxies": loss.proxies.detach().clone(),
        "types": sorted({type(m).__name__ for m in model.modules()}),
    }


def fisher_program(rank: int) -> dict:
    """Both estimators over 17 items in batches of 5 (5, 5, 5, 2), through ``fisher_over``."""
    from crossforget.unlearning.methods.common import fisher_over

    store, config = toy()
    model, loss = _model(config)
    task = SimpleNamespace(loss=loss, batches=lambda indices, size: iterate_batches(store, indices, size))
    return {
        estimator: fisher_over(model, task, np.arange(ITEMS), estimator, 5, "toy")
        for estimator in ("batch", "per_sample")
    }


def encoding_program(rank: int) -> dict:
    """Codes of 17 items in batches of 5 and the mAP of items against themselves."""
    from crossforget.metrics.retrieval import mean_average_precision
    from crossforget.tasks.hashing.evaluation import encode

    store, config = toy()
    model, _ = _model(config)
    codes = encode(model, store, np.arange(ITEMS), batch_size=5)
    labels = store.labels.numpy()
    return {
        "image": codes.image,
        "text": codes.text,
        "map": float(mean_average_precision(codes.image, codes.text, labels, labels)),
    }


def writing_program(rank: int, folder: str) -> list[str]:
    """Every rank calls the writers with its own file names; returns what the rank saw in its scratch."""
    from crossforget.core.checkpoint import Checkpoint, save_checkpoint
    from crossforget.core.io import atomic_directory, atomic_write_json

    root = Path(folder)
    atomic_write_json(root / f"plain-rank{rank}.json", {"rank": rank})
    save_checkpoint(root / f"checkpoint-rank{rank}", Checkpoint({"rank": rank}, {"w": torch.ones(2)}, {}, {}))
    with atomic_directory(root / "published") as tmp:
        atomic_write_json(tmp / f"inside-rank{rank}.json", {"rank": rank})
        seen = sorted(p.name for p in tmp.iterdir())
        outside = str(tmp.resolve()).startswith(str(root.resolve()))
    return [*seen, f"scratch inside the output's parent: {outside}"]


def classification_program(rank: int) -> dict:
    """3 SGD steps (3 x 8 images) of the classification loop, then the logits of every image.

    The ranks differ from one process by rounding (1e-7) only; a ReLU network turns that into a jump
    of the gradient when a unit sits at its kink. With 20 images (last batch 4) this seed hits one at
    step 2: one process reproduces the jump when given the 2-rank weights (1.2e-7 away), so it is a
    property of the loss surface, not of the sharding. 24 images avoid it.
    """
    from crossforget.data.scenes.single import generate_scenes_single
    from crossforget.models.classifier import build_classifier, classifier_config
    from crossforget.tasks.classification.evaluation import predict
    from crossforget.tasks.classification.recipe import ClassifierRecipe
    from crossforget.tasks.classification.store import make_store
    from crossforget.tasks.classification.training import train_loop

    data = generate_scenes_single(num_train=24, num_test=4, image_size=32, num_classes=4, include=["dog"])
    config = classifier_config("resnet-small", data.num_classes, 16)  # 32 px data, 16 px input
    store = make_store(data, config)
    torch.manual_seed(0)
    model, _ = build_classifier(config)
    recipe = ClassifierRecipe(epochs=1, batch_size=8)
    history = train_loop(model, store, data.train, recipe, seed=2, show_progress=False)
    return {
        "history": history,
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "logits": predict(model, store, np.arange(len(data))),
    }
