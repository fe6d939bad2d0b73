"""Turning a MultiModalData into model-ready batches.

A ``Preprocessor`` knows the image size, pixel normalisation and tokenizer of one backbone; a
``BatchSource`` hands out batches by dataset index, on its ``device``. ``TensorStore`` tokenizes every
caption once and keeps the images decoded in memory when they fit (else decodes per batch, in background
threads ahead of use, caching what fits). Backbones whose inputs are precomputed (cached CLIP features)
bring ``CachedInputs`` that open their own store. Batches are dicts such as images (B,3,H,W) float,
text_ids/text_mask (B,L), labels (B,C) float.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from crossforget.core.device import to_device
from crossforget.core.distributed import shard_slice
from crossforget.data.container import MultiModalData
from crossforget.losses.base import Batch
from crossforget.models.tokenizer import WordTokenizer


class Preprocessor(Protocol):
    """Backbone-specific input handling; ``to_config`` must describe it fully (stored in checkpoints)."""

    image_size: int

    def images(self, pixels: torch.Tensor) -> torch.Tensor: ...

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_config(self) -> dict: ...


class BatchSource(Protocol):
    """Batches by dataset index; ``num_captions`` lets training draw one caption per item.

    ``labels`` and ``num_captions`` stay on the CPU; batches are placed on ``device`` (None: the CPU).
    ``preprocessor`` is what built the store (compared by ``to_config()`` to reuse a store). A store
    whose ``augments_pixels`` is true also takes ``batch(indices, caption, augment=generator)`` and
    augments its raw pixels (``iterate_batches`` then leaves the finished batch alone).
    """

    labels: torch.Tensor
    num_captions: torch.Tensor
    device: torch.device | None
    preprocessor: Preprocessor | CachedInputs

    def __len__(self) -> int: ...

    def batch(self, indices: torch.Tensor, caption: torch.Tensor | None = None) -> Batch: ...


class CachedInputs(Protocol):
    """Inputs read from a precomputed file (e.g. cached CLIP features) rather than from pixels and text."""

    def open_store(self, data: MultiModalData, device: torch.device | None) -> BatchSource: ...

    def to_config(self) -> dict: ...


Inputs = Preprocessor | CachedInputs


def open_store(
    data: MultiModalData,
    inputs: Inputs,
    device: torch.device | None = None,
    num_workers: int = 0,
    memory_budget: int = 4 << 30,
) -> BatchSource:
    """The batch source a backbone reads: its own store for cached inputs, else a ``TensorStore``."""
    opener = getattr(inputs, "open_store", None)
    if callable(opener):
        return opener(data, device)
    return TensorStore(data, inputs, memory_budget=memory_budget, device=device, num_workers=num_workers)


def store_matches(store: BatchSource | None, inputs: Inputs) -> bool:
    """Whether ``store`` was built for these inputs (so it can be reused across bit lengths)."""
    return store is not None and store.preprocessor.to_config() == inputs.to_config()


@dataclass
class WordPreprocessor:
    """Pixel statistics and word tokenizer of the small backbone (CLIP brings its own)."""

    image_size: int
    tokenizer: WordTokenizer
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def images(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 (B,H,W,3) -> normalised float (B,3,H,W)."""
        x = pixels.permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return x.sub_(mean).div_(std)

    def texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = self.tokenizer.encode(texts)
        return ids, ids != 0

    def to_config(self) -> dict:
        return {
            "image_size": self.image_size,
            "tokenizer": self.tokenizer.to_config(),
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_config(cls, config: dict) -> WordPreprocessor:
        return cls(
            config["image_size"],
            WordTokenizer.from_config(config["tokenizer"]),
            tuple(config["mean"]),
            tuple(config["std"]),
        )


class _DecodeAhead:
    """Decodes the images of the coming batches in a thread pool, a bounded window ahead of use.

    Each batch is split into one piece per worker, so one batch already uses every worker; results are
    consumed strictly in the announced order, so batches do not depend on thread timing.
    """

    def __init__(
        self,
        decode: Callable[[list[int]], np.ndarray],
        chunks: Sequence[torch.Tensor],
        workers: int,
        depth: int = 2,
    ) -> None:
        self.decode = decode
        self.workers = workers
        self.depth = depth
        self.pending = deque(chunks)
        self.inflight: deque[tuple[torch.Tensor, list[Future]]] = deque()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="crossforget-decode")

    def _fill(self) -> None:
        while self.pending and len(self.inflight) < self.depth:
            chunk = self.pending.popleft()
            pieces = np.array_split(np.asarray(chunk.tolist()), min(self.workers, chunk.numel()))
            futures = [self.pool.submit(self.decode, piece.tolist()) for piece in pieces if piece.size]
            self.inflight.append((chunk, futures))

    def take(self, indices: torch.Tensor) -> np.ndarray | None:
        """Pixels of the next announced batch if ``indices`` is that batch, else None."""
        self._fill()
        if not self.inflight or not torch.equal(self.inflight[0][0], indices):
            return None
        _, futures = self.inflight.popleft()
        self._fill()
        return np.concatenate([f.result() for f in futures])

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class TensorStore:
    """A dataset's items, tokenized once; images decoded once when they fit in ``memory_budget`` bytes.

    Otherwise images are decoded per batch (``num_workers`` threads, ahead of use inside
    ``decoding_ahead``) and kept in a cache until it holds ``memory_budget`` bytes, so a training set
    that fits is decoded only in the first epoch. ``augments_pixels``: ``batch`` takes ``augment``.
    """

    augments_pixels = True

    def __init__(
        self,
        data: MultiModalData,
        preprocessor: Preprocessor,
        memory_budget: int = 4 << 30,
        device: torch.device | None = None,
        num_workers: int = 0,
    ) -> None:
        self.preprocessor = preprocessor
        self.device = device
        self.num_workers = num_workers
        self.memory_budget = memory_budget
        size = preprocessor.image_size
        self.images = data.require_images()
        self.pixels: torch.Tensor | None = None
        self._cache: dict[int, np.ndarray] = {}
        self._cache_bytes = 0
        self._lock = threading.Lock()
        self._ahead: _DecodeAhead | None = None
        if len(data) * size * size * 3 <= memory_budget:
            self.pixels = torch.from_numpy(self._decode_all(len(data), size))
        per_item = max(len(c) for c in data.captions)
        flat = [caps[j % len(caps)] for caps in data.captions for j in range(per_item)]
        ids, mask = preprocessor.texts(flat)
        self.text_ids = ids.view(len(data), per_item, -1)
        self.text_mask = mask.view(len(data), per_item, -1)
        self.num_captions = torch.tensor([len(c) for c in data.captions])
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def _decode_all(self, count: int, size: int) -> np.ndarray:
        if self.num_workers <= 1:
            return np.ascontiguousarray(self.images.load(range(count), size))
        out = np.empty((count, size, size, 3), dtype=np.uint8)

        def fill(start: int) -> None:
            stop = min(count, start + 256)
            out[start:stop] = self.images.load(range(start, stop), size)

        with ThreadPoolExecutor(self.num_workers, thread_name_prefix="crossforget-decode") as pool:
            list(pool.map(fill, range(0, count, 256)))
        return out

    def _decode(self, indices: list[int]) -> np.ndarray:
        """Decode (or take from the cache) the images of ``indices``; thread-safe."""
        size = self.preprocessor.image_size
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        missing = []
        for row, index in enumerate(indices):
            cached = self._cache.get(index)
            if cached is None:
                missing.append(row)
            else:
                out[row] = cached
        if missing:
            fresh = self.images.load([indices[r] for r in missing], size)
            out[missing] = fresh
            with self._lock:
                for row, image in zip(missing, fresh, strict=True):
                    if self._cache_bytes + image.nbytes > self.memory_budget:
                        break
                    if indices[row] not in self._cache:
                        self._cache[indices[row]] = image.copy()
                        self._cache_bytes += image.nbytes
        return out

    @contextlib.contextmanager
    def decoding_ahead(self, chunks: Sequence[torch.Tensor]) -> Iterator[None]:
        """Within the block, the images of ``chunks`` (the coming batches, in order) decode in background."""
        if self.pixels is not None or self.num_workers < 1 or self._ahead is not None or not chunks:
            yield
            return
        self._ahead = _DecodeAhead(self._decode, chunks, self.num_workers)
        try:
            yield
        finally:
            self._ahead.close()
            self._ahead = None

    def _pixels(self, indices: torch.Tensor) -> torch.Tensor:
        if self.pixels is not None:
            return self.pixels[indices]
        ready = self._ahead.take(indices) if self._ahead is not None else None
        return torch.from_numpy(ready if ready is not None else self._decode(indices.tolist()))

    def batch(
        self,
        indices: torch.Tensor,
        caption: torch.Tensor | None = None,
        augment: torch.Generator | None = None,
        rows: tuple[slice, int] | None = None,
    ) -> Batch:
        """``caption`` picks one caption per item (training); None means the canonical first one.

        ``augment``: flip and shift the images with this generator while they are still uint8 (H, W, 3)
        pixels, one gather for the batch: the same values and random draws as ``augment_images`` on
        the normalised batch, at a fraction of the cost (the batch comes out NCHW, see below).
        ``rows`` = (part, total): ``indices`` are rows ``part`` of a batch of ``total`` (one rank's
        share); the draws are made for the whole batch, as one process makes them.
        """
        if caption is None:
            caption = torch.zeros_like(indices)
        if augment is None:
            pixels = self._pixels(indices)
        elif self.pixels is not None:  # gathered straight from the decoded set, shifted and flipped
            pixels = augment_pixels(self.pixels, augment, items=indices, rows=rows)
        else:
            pixels = augment_pixels(self._pixels(indices), augment, rows=rows)
        raw = {
            "pixels": pixels,
            "text_ids": self.text_ids[indices, caption],
            "text_mask": self.text_mask[indices, caption],
            "labels": self.labels[indices],
        }
        batch = to_device(raw, self.device)
        images = self.preprocessor.images(batch.pop("pixels"))
        if augment is not None:
            # Training batches in NCHW, as augment_images made them: channels-last convolutions train
            # faster on the CPU, but their weight gradients depend on the thread count and batch split
            # enough that Adam turns it into ~1e-3 weight differences within two steps (1 vs 2 threads,
            # or 2 torchrun ranks vs 1 process); in NCHW the same comparisons agree to ~1e-6.
            images = images.contiguous()
        return {"images": images, **batch}


def _shift_draws(
    b: int, generator: torch.Generator, max_shift: int, rows: tuple[slice, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """The random draws of one batch's augmentation, in their fixed order: flips, then dx, then dy.

    ``rows`` = (part, total): draw for the whole batch of ``total`` and keep rows ``part``."""
    part, drawn = rows if rows is not None else (slice(None), b)
    flip = (torch.rand(drawn, generator=generator) < 0.5)[part]
    if max_shift <= 0:
        return flip, None, None
    dx = torch.randint(0, 2 * max_shift + 1, (drawn,), generator=generator)[part]
    dy = torch.randint(0, 2 * max_shift + 1, (drawn,), generator=generator)[part]
    return flip, dx, dy


def _reflect(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Source index of each position of a reflect-padded axis (no edge repeat, as ``F.pad`` reflect)."""
    positions = positions.abs()
    return torch.where(positions > size - 1, 2 * (size - 1) - positions, positions)


def augment_pixels(
    pixels: torch.Tensor,
    generator: torch.Generator,
    max_shift: int = 3,
    items: torch.Tensor | None = None,
    rows: tuple[slice, int] | None = None,
) -> torch.Tensor:
    """``augment_images`` on uint8 (N, H, W, C) pixels as one gather: flip, reflect pad, crop.

    ``items``: the rows of ``pixels`` that make the batch (None: all, in order), gathered in the same
    pass. Flips and shifts only move pixels, so doing them before normalisation gives bit-identical
    images; the random draws are the same, in the same order, as ``augment_images``'s.
    """
    n, h, w, c = pixels.shape
    items = torch.arange(n) if items is None else items.to("cpu", torch.long)
    b = items.numel()
    if max_shift >= min(h, w):
        raise ValueError(f"a shift of {max_shift} needs images larger than {h}x{w}")
    flip, dx, dy = _shift_draws(b, generator, max_shift, rows)
    ys = torch.arange(h).expand(b, h)
    xs = torch.arange(w).expand(b, w)
    if dx is not None and dy is not None:
        ys = _reflect(dy.view(b, 1) - max_shift + ys, h)
        xs = _reflect(dx.view(b, 1) - max_shift + xs, w)
    xs = torch.where(flip.view(b, 1), w - 1 - xs, xs)  # flipped first, then padded and cropped
    flat = (items.view(b, 1, 1) * h + ys.view(b, h, 1)) * w + xs.view(b, 1, w)
    return pixels.reshape(n * h * w, c).index_select(0, flat.view(-1).to(pixels.device)).view(b, h, w, c)


def augment_images(
    images: torch.Tensor,
    generator: torch.Generator,
    max_shift: int = 3,
    rows: tuple[slice, int] | None = None,
) -> torch.Tensor:
    """Random horizontal flips and small translations (reflect padding), cheap regularisation.

    For normalised (B, C, H, W) batches; a store with raw pixels does the same on uint8 (``augment_pixels``).
    ``rows`` = (part, total): the images are rows ``part`` of a batch of ``total`` (one rank's share);
    the draws are made for the whole batch, so each image gets what it would get in one process.
    """
    b, _, h, w = images.shape
    device = images.device
    flip, dx, dy = _shift_draws(b, generator, max_shift, rows)
    images = torch.where(flip.to(device).view(b, 1, 1, 1), images.flip(3), images)
    if dx is None or dy is None:
        return images
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, mode="reflect")
    dx, dy = dx.to(device), dy.to(device)
    ys = (dy.view(b, 1) + torch.arange(h, device=device).view(1, h)).view(b, 1, h, 1)
    cropped = padded.gather(2, ys.expand(b, 3, h, w + 2 * max_shift))
    cols = (dx.view(b, 1) + torch.arange(w, device=device).view(1, w)).view(b, 1, 1, w).expand(b, 3, h, w)
    return cropped.gather(3, cols)


def iterate_batches(
    store: BatchSource,
    indices: np.ndarray | torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    random_caption: bool = False,
    augment: bool = False,
    shard: tuple[int, int] | None = None,
) -> Iterator[Batch]:
    """Mini-batches over ``indices``; training draws a random caption per item and may augment.

    The batches' indices are fixed before the first one is made, so a store that decodes lazily can
    work ahead (``decoding_ahead``); caption draws and augmentation stay in order on the caller's thread.
    ``shard`` = (rank, world size): yield only that rank's contiguous rows of each batch, with the
    captions and augmentation one process would give them (the draws are made for the whole batch).
    """
    idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
    if shuffle:
        idx = idx[torch.randperm(idx.numel(), generator=generator)]
    chunks = [idx[start : start + batch_size] for start in range(0, idx.numel(), batch_size)]
    parts = [slice(None) if shard is None else shard_slice(c.numel(), shard) for c in chunks]
    ahead = getattr(store, "decoding_ahead", None)
    local = chunks if shard is None else [c[p] for c, p in zip(chunks, parts, strict=True)]
    with ahead(local) if ahead is not None else contextlib.nullcontext():
        for chunk, part in zip(chunks, parts, strict=True):
            caption = None
            if random_caption:
                draws = torch.rand(chunk.numel(), generator=generator)
                caption = (draws * store.num_captions[chunk]).long()[part]
            rows = None if shard is None else (part, chunk.numel())
            if augment and getattr(store, "augments_pixels", False):
                yield store.batch(chunk[part], caption, augment=generator, rows=rows)
                continue
            batch = store.batch(chunk[part], caption)
            if augment and batch.get("images") is not None and batch["images"].dim() == 4:
                batch["images"] = augment_images(batch["images"], generator, rows=rows)
            yield batch
