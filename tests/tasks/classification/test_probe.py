"""The classification probe of the forgetting guard: accuracies on training images, never the test split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.tasks.classification.evaluation import evaluate_classifier
from crossforget.tasks.classification.probe import ClassificationProbeSizes, classification_probe
from crossforget.tasks.classification.task import classification_task
from crossforget.unlearning.methods import create_method
from tests.tasks.classification.conftest import train_tiny


class Lookup(nn.Module):
    """A 'classifier' whose logits for image i are row i of a fixed table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = table


def test_scores_are_the_accuracies_on_the_sampled_training_images():
    targets = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    train = np.arange(8)  # 8 and 9 are the test split
    predicted = np.array([0, 1, 1, 1, 2, 0, 2, 0, 1, 2])
    table = torch.nn.functional.one_hot(torch.from_numpy(predicted), 3).float()
    seen: list[np.ndarray] = []

    def logits(model: nn.Module, indices: np.ndarray) -> torch.Tensor:
        seen.append(np.asarray(indices))
        return model.table[torch.from_numpy(indices)]

    probe = classification_probe(logits, targets, train, [1])
    scores = probe.score(Lookup(table))
    # forget class 1 among the training images: 2, 3 (both right); retained: 0 1 4 5 6 7 -> right 0 4 6 7
    assert scores.forget == pytest.approx(1.0)
    assert scores.retain == pytest.approx(4 / 6)
    assert probe.forget_floor == 0.0
    assert set(np.concatenate(seen)) == set(range(8))
    never = classification_probe(logits, targets, train, [0])
    assert never.score(Lookup(table)).forget == pytest.approx(2 / 3)


def test_a_multi_class_request_is_also_scored_class_by_class():
    targets = np.array([0, 0, 1, 1, 2, 2, 2, 0, 1, 2])
    predicted = np.array([0, 1, 1, 0, 2, 0, 2, 0, 1, 2])
    table = torch.nn.functional.one_hot(torch.from_numpy(predicted), 3).float()
    probe = classification_probe(lambda m, i: m.table[torch.from_numpy(i)], targets, np.arange(8), [2, 1])
    scores = probe.score(Lookup(table))
    # class 2 training images 4 5 6: right 4 6; class 1 images 2 3: right 2; pooled 3 of 5
    assert scores.per_class == pytest.approx((2 / 3, 1 / 2)) and scores.forget == pytest.approx(3 / 5)
    assert probe.class_floors == (0.0, 0.0)
    single = classification_probe(lambda m, i: m.table[torch.from_numpy(i)], targets, np.arange(8), [1])
    assert single.score(Lookup(table)).per_class == () and single.class_floors == ()


def test_samples_are_seeded_sized_and_from_the_training_split():
    targets = np.repeat(np.arange(5), 40)
    rng = np.random.default_rng(3)
    order = rng.permutation(targets.size)
    train, test = np.sort(order[:150]), np.sort(order[150:])
    seen: list[np.ndarray] = []

    def logits(model: nn.Module, indices: np.ndarray) -> torch.Tensor:
        seen.append(np.asarray(indices))
        return torch.zeros(len(indices), 5)

    sizes = ClassificationProbeSizes(forget_images=7, retain_images=11)
    for seed in (4, 4, 5):
        classification_probe(logits, targets, train, [2], sizes, seed=seed).score(nn.Identity())
    first, again, other = seen
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.size == 18 and (targets[first] == 2).sum() == 7
    assert np.isin(first, train).all() and not np.isin(first, test).any()


def test_a_request_without_forget_or_retained_training_images_is_an_error():
    with pytest.raises(CrossforgetError, match="both the forget and the retained"):
        classification_probe(lambda m, i: torch.zeros(len(i), 2), np.array([0, 0, 1]), np.array([0, 1]), [0])
    with pytest.raises(CrossforgetError, match="at least one"):
        ClassificationProbeSizes(forget_images=0)


@pytest.fixture(scope="module")
def tiny():
    return train_tiny(3)


def test_the_task_probe_matches_the_training_accuracies(tiny):
    data, store, saved = tiny
    forget = [data.class_index("dog")]
    task = classification_task(saved, data, store, forget)
    assert task.probe is not None and "training images" in task.probe.description
    scores = task.probe.score(saved.model)  # 20 dog and 140 retained images: all below the sample sizes
    reference = evaluate_classifier(saved.model, store, data, forget)
    assert scores.forget == pytest.approx(reference["forget_acc_train"])
    assert scores.retain == pytest.approx(reference["retain_acc_train"])


def test_ppp_runs_its_guard_on_a_classifier(tiny):
    data, store, saved = tiny
    task = classification_task(saved, data, store, [data.class_index("dog")])
    result = create_method("ppp").unlearn(saved.model, task, seed=0)
    guard = result.diagnostics["guard"]
    assert guard["acted_on"] in ("none", "retain", "forget", "both")
    assert guard["probe"] == task.probe.description and guard["forget_floor"] == 0.0
    assert guard["original"]["forget"] == pytest.approx(task.probe.score(saved.model).forget)
    assert guard["steps"] and guard["steps"][0]["alpha"] == 30.0
