"""torch.distributed: 2 gloo processes give the single-process numbers (training, Fisher, codes, mAP),
only rank 0 writes, and the helpers are no-ops in one process.

The references run in this process with one thread, as the two ranks do: a different thread count
changes the order of float reductions inside torch's CPU kernels, which no sharding can reproduce.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from crossforget.core import distributed
from crossforget.models.inputs import iterate_batches
from tests.distributed_workers import ITEMS, run_ranks, toy, training_program


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _library_program(rank: int, folder: str) -> dict:
    from tests.distributed_workers import encoding_program, fisher_program, writing_program

    return {
        "fisher": fisher_program(rank),
        "codes": encoding_program(rank),
        "written": writing_program(rank, folder) if folder else None,
    }


@pytest.fixture(scope="module")
def library(one_thread: None, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("written")
    return {
        "one": run_ranks(_library_program, 1, folder="")[0],
        "two": run_ranks(_library_program, 2, folder=str(folder)),
        "folder": folder,
    }


def _training_programs(rank: int) -> dict:
    from tests.distributed_workers import classification_program

    return {**training_program(rank, twice=True), "classifier": classification_program(rank)}


@pytest.fixture(scope="module")
def training(one_thread: None) -> dict:
    return {"one": run_ranks(_training_programs, 1)[0], "two": run_ranks(_training_programs, 2)}


@pytest.mark.parametrize("estimator", ["batch", "per_sample"])
def test_fisher_of_two_ranks_equals_one_process(library: dict, estimator: str) -> None:
    one = library["one"]["fisher"][estimator]
    for rank in (0, 1):
        two = library["two"][rank]["fisher"][estimator]
        assert set(two) == set(one)
        for name, value in one.items():
            # Each rank sums the squared gradients of its whole mini-batches; only the order of the
            # float32 additions differs (a few ulps), so 1e-6 relative holds entry by entry.
            torch.testing.assert_close(two[name], value, rtol=1e-6, atol=0.0, msg=f"{estimator} {name}")
    assert any(bool(v.any()) for v in one.values())


def test_codes_and_map_of_two_ranks_are_identical(library: dict) -> None:
    one = library["one"]["codes"]
    for rank in (0, 1):
        two = library["two"][rank]["codes"]
        assert two["image"].shape == (ITEMS, 16)
        assert torch.equal(two["image"], one["image"]) and torch.equal(two["text"], one["text"])
        assert two["map"] == one["map"]


def test_only_rank_zero_writes(library: dict) -> None:
    folder = library["folder"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-rank0", "plain-rank0.json", "published"]
    assert sorted(p.name for p in (folder / "published").iterdir()) == ["inside-rank0.json"]
    zero, one = (library["two"][rank]["written"] for rank in (0, 1))
    # Rank 1 built its copy of the folder in a private scratch folder elsewhere, removed afterwards.
    assert zero == ["inside-rank0.json", "scratch inside the output's parent: True"]
    assert one == ["inside-rank1.json", "scratch inside the output's parent: False"]
    assert not any(p.name.startswith(".") for p in folder.iterdir())


def test_three_steps_on_two_ranks_follow_the_single_process_trajectory(training: dict) -> None:
    one = training["one"]
    for rank in (0, 1):
        two = training["two"][rank]
        # The losses are the global batch's on every rank; the float32 sums only regroup.
        assert two["history"] == pytest.approx(one["history"], rel=1e-6)
        for name, value in one["model"].items():
            # Tolerance 1e-5: 10x the largest difference measured (1e-6, from summing the gradients of
            # the two halves of each batch in another order, carried through AdamW and clipping), and
            # 200x below one optimiser step (lr 2e-3): a wrong dropout mask, BatchNorm statistic or
            # gradient scale moves weights by about a step.
            torch.testing.assert_close(two["model"][name].double(), value.double(), rtol=0.0, atol=1e-5)
        torch.testing.assert_close(two["proxies"], one["proxies"], rtol=0.0, atol=1e-5)
    # The ranks hold bitwise the same model, and the original layers are back after training.
    for name, value in training["two"][0]["model"].items():
        assert torch.equal(value, training["two"][1]["model"][name])
    assert "BatchNorm2d" in one["types"] and training["two"][0]["types"] == one["types"]


def test_classifier_training_on_two_ranks_follows_the_single_process_trajectory(training: dict) -> None:
    one = training["one"]["classifier"]
    for rank in (0, 1):
        two = training["two"][rank]["classifier"]
        assert two["history"] == pytest.approx(one["history"], rel=1e-6)
        for name, value in one["model"].items():  # SGD steps of lr 0.05: 1e-5 is far below one step
            torch.testing.assert_close(two["model"][name].double(), value.double(), rtol=0.0, atol=1e-5)
        torch.testing.assert_close(two["logits"], one["logits"], rtol=0.0, atol=1e-5)
    assert torch.equal(training["two"][0]["classifier"]["logits"], training["two"][1]["classifier"]["logits"])


def test_shards_of_a_batch_are_the_single_process_rows() -> None:
    store, _ = toy()

    def batches(shard: tuple[int, int] | None) -> list[dict]:
        generator = torch.Generator().manual_seed(5)
        kwargs = {"shuffle": True, "random_caption": True, "augment": True, "shard": shard}
        return list(iterate_batches(store, np.arange(ITEMS), 8, generator=generator, **kwargs))

    whole, parts = batches(None), [batches((r, 2)) for r in (0, 1)]
    assert [len(p) for p in parts] == [3, 3]
    for batch, first, second in zip(whole, *parts, strict=True):
        for key, value in batch.items():
            assert torch.equal(torch.cat([first[key], second[key]]), value), key
    assert [b["labels"].shape[0] for b in parts[1]] == [4, 4, 0]


def test_shard_helpers_split_whole_batches_in_order() -> None:
    sizes = [distributed.shard_slice(10, (r, 4)) for r in range(4)]
    assert [(s.start, s.stop) for s in sizes] == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert distributed.shard_batches(np.arange(17), 5).tolist() == list(range(17))  # one process: all


def test_helpers_are_no_ops_in_one_process(tmp_path: os.PathLike) -> None:
    assert not distributed.is_active() and distributed.is_main()
    assert distributed.world_size() == 1 and distributed.rank() == 0
    value = torch.arange(6.0).view(3, 2)
    assert distributed.gather_rows(value) is value
    assert distributed.agree("x", "a value") == "x"
    distributed.barrier()
    assert distributed.per_rank_batch_size(128) == 128
    assert distributed.main_process_only(lambda: 7)() == 7
