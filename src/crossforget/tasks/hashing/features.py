"""Extract CLIP image and caption embeddings of a whole dataset once, for the frozen-backbone mode."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from crossforget.core import distributed
from crossforget.core.device import autocast
from crossforget.core.progress import progress_bar
from crossforget.models.clip import (
    ClipImageEncoder,
    ClipPreprocessor,
    ClipTextEncoder,
    clip_model_config,
    load_local_clip,
)
from crossforget.models.features import write_features
from crossforget.models.inputs import TensorStore, iterate_batches
from crossforget.tasks.hashing.training import LoadedData


def pretrained_encoders(source: str) -> tuple[ClipImageEncoder, ClipTextEncoder, ClipPreprocessor]:
    """The pretrained CLIP encoders of ``source`` (a private copy of the loaded model) and preprocessor."""
    config = clip_model_config({"clip_model": source})
    clip = copy.deepcopy(load_local_clip(source).model)
    preprocessor = ClipPreprocessor(
        clip.config.vision_config.image_size, config["tokenizer"], config["pad_id"], config["max_text_length"]
    )
    return ClipImageEncoder(clip), ClipTextEncoder(clip), preprocessor


@torch.no_grad()
def extract_features(
    loaded: LoadedData, source: str, out: Path, batch_size: int = 256, show_progress: bool = True
) -> dict:
    """Embed every item's image and every caption slot, write ``out`` atomically; returns a summary."""
    device = loaded.device or torch.device("cpu")
    image_encoder, text_encoder, preprocessor = pretrained_encoders(source)
    image_encoder.to(device).eval()
    text_encoder.to(device).eval()
    started = time.perf_counter()
    store = TensorStore(
        loaded.data,
        preprocessor,
        memory_budget=loaded.memory_budget,
        device=device,
        num_workers=loaded.num_workers,
    )
    count, per_item = store.text_ids.shape[:2]
    ids = store.text_ids.view(count * per_item, -1)
    mask = store.text_mask.view(count * per_item, -1)
    # Under torchrun each rank embeds a block of whole batches (items, then caption rows); gathered below.
    items, captions = np.arange(count), np.arange(ids.shape[0])
    if distributed.is_active():
        items, captions = (distributed.shard_batches(x, batch_size) for x in (items, captions))
    image = torch.empty(len(items), image_encoder.out_dim, dtype=torch.float32)
    text = torch.empty(len(captions), text_encoder.out_dim, dtype=torch.float32)
    steps = -(-len(items) // batch_size) + -(-len(captions) // batch_size)
    with progress_bar("CLIP features", total=steps, enabled=show_progress) as bar:
        start = 0
        for batch in iterate_batches(store, items, batch_size):
            with autocast(device):
                embedded = image_encoder(batch["images"])
            image[start : start + embedded.shape[0]] = embedded.float().cpu()
            start += embedded.shape[0]
            bar.advance(1)
        low = int(captions[0]) if len(captions) else 0  # the block is contiguous, whole batches
        for first in range(low, low + len(captions), batch_size):
            rows = slice(first, first + batch_size)
            with autocast(device):
                embedded = text_encoder(ids[rows].to(device), mask[rows].to(device))
            text[first - low : first - low + embedded.shape[0]] = embedded.float().cpu()
            bar.advance(1)
    if distributed.is_active():
        image, text = distributed.gather_rows(image), distributed.gather_rows(text)
        distributed.barrier()  # every rank done: rank 0 alone writes the file
    seconds = time.perf_counter() - started
    dataset = {"name": loaded.spec.name, "options": loaded.spec.options}
    if distributed.is_main():
        write_features(
            out, image, text.view(count, per_item, -1), store.num_captions, loaded.data, dataset, source
        )
    return {
        "items": int(count),
        "captions_per_item": int(per_item),
        "feature_dim": int(image.shape[1]),
        "seconds": seconds,
        "items_per_second": count / max(seconds, 1e-9),
        "device": str(device),
        "out": str(out),
    }
