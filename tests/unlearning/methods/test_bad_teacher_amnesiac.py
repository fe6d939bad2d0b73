"""Bad Teacher and Amnesiac: their defining behaviour on toy tasks, for classifiers and hashing models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossforget.core.errors import CrossforgetError
from crossforget.losses.classification import kl_to_teacher
from crossforget.unlearning.methods import UnlearningTask, create_method
from crossforget.unlearning.methods.amnesiac import relabel
from crossforget.unlearning.methods.bad_teacher import BadTeacher


def test_kl_matches_hand_computation():
    student = torch.tensor([[0.0, 0.0], [1.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # softmax (0.75, 0.25) and (0.5, 0.5)
    kl = kl_to_teacher(student, teacher)
    # row 0: 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5); row 1: p = softmax(1, 0)
    p = math.e / (1 + math.e)
    expected = [
        0.75 * math.log(1.5) + 0.25 * math.log(0.5),
        0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p)),
    ]
    assert kl.detach().tolist() == pytest.approx(expected)
    assert kl.detach().tolist() == pytest.approx([0.1308120, 0.1201145], abs=1e-6)
    reference = F.kl_div(F.log_softmax(student, 1), F.softmax(teacher, 1), reduction="none").sum(1)
    assert torch.allclose(kl, reference)
    kl.sum().backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def _toy_task(fit_relabelled=None) -> UnlearningTask:
    """Three well separated 3-d clusters, one per class; class 0 is forgotten; a linear classifier."""
    gen = torch.Generator().manual_seed(0)
    centres = torch.eye(3) * 4
    targets = torch.arange(60) % 3
    x = centres[targets] + 0.3 * torch.randn(60, 3, generator=gen)

    def batches(indices, size):
        idx = torch.as_tensor(np.asarray(indices))
        for start in range(0, idx.numel(), size):
            chunk = idx[start : start + size]
            yield {"x": x[chunk], "labels": targets[chunk]}

    def uniform_teacher(seed):  # a "random" model whose outputs are uniform: easy to check against
        model = nn.Linear(3, 3)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        return model

    forget = np.flatnonzero(targets.numpy() == 0)
    retain = np.flatnonzero(targets.numpy() != 0)
    return UnlearningTask(
        loss=lambda model, batch, reduction="mean": F.cross_entropy(
            model(batch["x"]), batch["labels"], reduction=reduction
        ),
        batches=batches,
        labels=F.one_hot(targets, 3).float(),
        train_forget=forget,
        train_retain=retain,
        forget_classes=[0],
        class_names=["a", "b", "c"],
        fit=None,
        fresh_model=uniform_teacher,
        reinit_names=lambda m: list(m.state_dict()),
        prototypes=None,
        outputs=lambda model, batch: model(batch["x"]),
        distillation_loss=kl_to_teacher,
        fit_relabelled=fit_relabelled,
        random_model=uniform_teacher,
    )


def _trained_toy(task: UnlearningTask) -> nn.Module:
    torch.manual_seed(1)
    model = nn.Linear(3, 3)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.1)
    batch = next(iter(task.batches(np.arange(60), 60)))
    for _ in range(200):
        optimiser.zero_grad()
        task.loss(model, batch).backward()
        optimiser.step()
    return model


def test_bad_teacher_step_uses_the_incompetent_teacher_on_forget_rows_only():
    task = _toy_task()
    torch.manual_seed(3)
    student, competent, incompetent = nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3)
    batch = next(iter(task.batches(np.array([0, 1, 2, 3]), 4)))  # classes 0, 1, 2, 0
    forget = torch.tensor([True, False, False, True])
    with torch.no_grad():
        s, good, bad = student(batch["x"]), competent(batch["x"]), incompetent(batch["x"])
        expected = []
        for i in range(4):
            q = F.softmax(bad[i] if forget[i] else good[i], 0)
            expected.append(float((q * (q.log() - F.log_softmax(s[i], 0))).sum()))
    optimiser = torch.optim.SGD(student.parameters(), lr=0.0)
    value = BadTeacher._step(student, competent, incompetent, task, batch, forget, optimiser)
    assert value == pytest.approx(np.mean(expected), rel=1e-5)


def test_bad_teacher_makes_forget_outputs_uniform_and_keeps_the_rest():
    task = _toy_task()
    original = _trained_toy(task)
    before = {k: v.clone() for k, v in original.state_dict().items()}
    method = create_method("bad_teacher", retain_fraction=1.0, epochs=150, lr=0.05, batch_size=20)
    result = method.unlearn(original, task, seed=0)
    assert all(torch.equal(original.state_dict()[k], v) for k, v in before.items())
    x = next(iter(task.batches(np.arange(60), 60)))["x"]
    uniform = torch.zeros(60, 3)
    with torch.no_grad():
        new, old = result.model(x), original(x)
    forget, retain = torch.from_numpy(task.train_forget), torch.from_numpy(task.train_retain)
    assert kl_to_teacher(old[forget], uniform[forget]).mean() > 0.5  # the original is confident on D_f
    assert kl_to_teacher(new[forget], uniform[forget]).mean() < 0.05  # the student is not
    assert kl_to_teacher(new[retain], old[retain]).mean() < 0.05  # and still agrees with it on D_r
    assert result.diagnostics["retain_samples"] == task.train_retain.size


def test_bad_teacher_needs_outputs():
    task = _toy_task()
    task.outputs = None
    with pytest.raises(CrossforgetError, match="outputs"):
        create_method("bad_teacher").unlearn(nn.Linear(3, 3), task, seed=0)


def test_amnesiac_targets_never_equal_the_true_class():
    targets = torch.arange(1200) % 6
    labels = F.one_hot(targets, 6).float()
    new = relabel(labels, [1, 3], np.random.default_rng(0))
    assert torch.equal(new.sum(1), torch.ones(1200))
    moved = (targets == 1) | (targets == 3)
    new_class = new.argmax(1)
    assert not bool((new_class[moved] == targets[moved]).any())
    assert set(new_class[moved].tolist()) == {0, 2, 4, 5}  # every retained class, never a forget class
    assert torch.equal(new[~moved], labels[~moved])
    assert torch.equal(labels.argmax(1), targets)  # the input is not modified


def test_amnesiac_multi_label_rows():
    labels = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1], [0, 1, 0, 0, 1]], dtype=torch.float32)
    for seed in range(20):
        new = relabel(labels, [0], np.random.default_rng(seed))
        assert new[0, 0] == 0 and new[0, 1] == 1 and new[0, 3] == 1 and new[0].sum() == 3
        assert new[0, 2] + new[0, 4] == 1  # the new label is one the row did not carry
        assert new[1].tolist() == [0, 1, 1, 1, 1]  # nothing free: the forget label is just dropped
        assert torch.equal(new[2], labels[2])
    with pytest.raises(CrossforgetError):
        relabel(labels, [7], np.random.default_rng(0))


def test_amnesiac_trains_on_retain_plus_relabelled_forget():
    calls = []

    def record(model, indices, labels, epochs, seed, lr, batch_size):
        calls.append((np.asarray(indices).copy(), labels.clone(), epochs, lr, batch_size))
        with torch.no_grad():
            model.bias.add_(1.0)

    task = _toy_task(record)
    original = nn.Linear(3, 3)
    before = original.bias.clone()
    result = create_method("amnesiac").unlearn(original, task, seed=5)
    indices, labels, epochs, lr, batch_size = calls[0]
    assert (epochs, lr, batch_size) == (3, 1e-4, 128)  # the reference settings
    assert sorted(indices.tolist()) == list(range(60))
    true = task.labels[torch.from_numpy(indices)].argmax(1)
    is_forget = torch.from_numpy(np.isin(indices, task.train_forget))
    assert not bool((labels.argmax(1)[is_forget] == true[is_forget]).any())
    assert torch.equal(labels[~is_forget], task.labels[torch.from_numpy(indices)][~is_forget])
    assert torch.equal(original.bias, before) and torch.equal(result.model.bias, before + 1)
    create_method("amnesiac").unlearn(original, task, seed=5)
    assert torch.equal(calls[1][1], labels)  # same seed, same wrong labels


def test_hashing_extension(tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    from crossforget.data.forget import ForgetRequest
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint
    from crossforget.tasks.hashing.task import hashing_task, store_for
    from crossforget.tasks.hashing.training import load_data

    saved = load_hashing_checkpoint(tiny_checkpoint / "bits16")
    loaded = load_data(saved.dataset_spec)
    task = hashing_task(saved, loaded, ForgetRequest(["dog"]))
    batch = next(iter(task.batches(task.train_forget[:4], 4)))
    out = task.outputs(saved.model, batch)
    image, text = saved.model(batch)
    assert torch.equal(out, torch.cat([image, text], 1)) and out.shape == (4, 32)
    student, teacher = torch.tensor([[0.5, -0.5], [1.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    assert task.distillation_loss(student, teacher).tolist() == pytest.approx([0.25, 2.0])
    # Amnesiac on multi-hot labels: the relabelled rows are what training sees
    store = store_for(saved, loaded)
    seen = []
    from crossforget.tasks.hashing import task as ht

    original_train = ht.train_model

    def spy(model, loss, source, indices, recipe, seed, **kwargs):
        seen.append((source.batch(torch.as_tensor(indices[:8]))["labels"].clone(), recipe, loss))
        return original_train(model, loss, source, indices[:8], recipe, seed, **kwargs)

    monkeypatch.setattr(ht, "train_model", spy)
    new_labels = relabel(task.labels[task.train_forget], task.forget_classes, np.random.default_rng(0))
    task.fit_relabelled(task.fresh_model(0), task.train_forget, new_labels, 1, 0, lr=1e-4, batch_size=16)
    served, recipe, loss = seen[0]
    assert torch.equal(served, new_labels[:8].to(served))
    assert not served[:, task.forget_classes].any()
    assert (recipe.encoder_lr, recipe.head_lr, recipe.batch_size, recipe.epochs) == (1e-4, 1e-4, 16, 1)
    assert not loss.proxies.requires_grad
    assert torch.equal(store.labels[task.train_forget[:8]], task.labels[task.train_forget[:8]])
