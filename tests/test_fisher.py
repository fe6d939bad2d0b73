"""Diagonal Fisher estimators against their definitions, computed by brute force in the test."""

from __future__ import annotations

import io
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossforget.errors import CrossforgetError
from crossforget.unlearning import fisher as fisher_module
from crossforget.unlearning.fisher import batch_size, diagonal_fisher

Batch = dict[str, torch.Tensor]


def mse_loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    """Toy ModelLoss: per-sample mean squared error; "mean" is the mean of the per-sample losses."""
    per_sample = (model(batch) - batch["y"]).square().mean(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(5, 7), nn.ReLU(inplace=True), nn.Linear(7, 6, bias=False), nn.Tanh()
        )
        self.out = nn.Linear(6, 3)

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.out(self.body(batch["x"]))


class ConvEmbed(nn.Module):
    """Conv + BatchNorm image branch and Embedding / EmbeddingBag token branch, then a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.norm = nn.BatchNorm2d(2)
        self.embed = nn.Embedding(10, 3)
        self.bag = nn.EmbeddingBag(10, 2, mode="mean")
        self.head = nn.Linear(2 * 2 * 2 + 3 + 2, 3)

    def forward(self, batch: Batch) -> torch.Tensor:
        image = torch.relu(self.norm(self.conv(batch["image"]))).flatten(1)
        tokens = batch["tokens"]
        return self.head(torch.cat([image, self.embed(tokens).mean(dim=1), self.bag(tokens)], dim=1))


class Reuse(nn.Module):
    """The same Linear twice, a Linear on a 3-D input, and a weight used outside its layer."""

    def __init__(self) -> None:
        super().__init__()
        self.twice = nn.Linear(4, 4)
        self.seq = nn.Linear(4, 4)
        self.side = nn.Linear(4, 3)
        self.plain = nn.Linear(4, 3)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = batch["x"]
        h = self.twice(torch.tanh(self.twice(x)))
        h = self.seq(h.unsqueeze(1).expand(-1, 2, -1) * batch["scale"].unsqueeze(-1)).mean(dim=1)
        return self.side(h) + F.linear(h.square(), self.side.weight) + self.plain(torch.sin(h))


def loader(data: Batch, size: int) -> list[Batch]:
    n = len(data["y"])
    return [{k: v[i : i + size] for k, v in data.items()} for i in range(0, n, size)]


def mlp_data(n: int = 11) -> Batch:
    g = torch.Generator().manual_seed(1)
    return {
        "x": torch.randn(n, 5, generator=g, dtype=torch.float64),
        "y": torch.randn(n, 3, generator=g, dtype=torch.float64),
    }


def conv_data(n: int = 9) -> Batch:
    g = torch.Generator().manual_seed(2)
    return {
        "image": torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64),
        "tokens": torch.randint(0, 10, (n, 4), generator=g),
        "y": torch.randn(n, 3, generator=g, dtype=torch.float64),
    }


def reuse_data(n: int = 10) -> Batch:
    g = torch.Generator().manual_seed(3)
    return {
        "x": torch.randn(n, 4, generator=g, dtype=torch.float64),
        "scale": torch.rand(n, 2, generator=g, dtype=torch.float64),
        "y": torch.randn(n, 3, generator=g, dtype=torch.float64),
    }


def make(model_cls: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    model = model_cls().double()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):  # non-trivial running statistics and affine parameters
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.5, 0.5)
    return model


def brute_per_sample(model: nn.Module, data: Batch) -> dict[str, torch.Tensor]:
    """Eq. 4 by definition: one sample at a time, backward, square, mean over samples (eval mode)."""
    model.eval()
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    n = len(data["y"])
    for i in range(n):
        model.zero_grad()
        mse_loss(model, {k: v[i : i + 1] for k, v in data.items()}).backward()
        for name, p in model.named_parameters():
            sums[name] += p.grad.square()
    model.zero_grad(set_to_none=True)
    return {name: s / n for name, s in sums.items()}


def brute_batch(model: nn.Module, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """The SSD estimator by definition: backward of each batch-mean loss, square, mean over batches."""
    model.eval()
    sums = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for batch in batches:
        model.zero_grad()
        mse_loss(model, batch).backward()
        for name, p in model.named_parameters():
            sums[name] += p.grad.square()
    model.zero_grad(set_to_none=True)
    return {name: s / len(batches) for name, s in sums.items()}


def assert_fisher_close(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    for name, value in got.items():
        assert value.dtype == torch.float32 and value.shape == want[name].shape
        torch.testing.assert_close(value, want[name].float(), rtol=2e-5, atol=1e-9, msg=name)


def test_batch_size_reads_labels_first() -> None:
    assert batch_size({"x": torch.zeros(3, 2), "labels": torch.zeros(5, 4)}) == 5
    assert batch_size({"x": torch.zeros(3, 2)}) == 3


@pytest.mark.parametrize(
    ("model_cls", "data_fn"), [(MLP, mlp_data), (ConvEmbed, conv_data), (Reuse, reuse_data)]
)
def test_batch_estimator_matches_definition(model_cls: type[nn.Module], data_fn) -> None:
    model, batches = make(model_cls), loader(data_fn(), 4)
    assert_fisher_close(diagonal_fisher(model, mse_loss, batches), brute_batch(model, batches))


def test_per_sample_mlp_uses_hooks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_vmap(*args, **kwargs):
        raise AssertionError("a pure-Linear model must not need the torch.func path")

    monkeypatch.setattr(fisher_module, "_vmap_accumulate", no_vmap)
    model, data = make(MLP), mlp_data()
    got = diagonal_fisher(model, mse_loss, loader(data, 4), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data))


def generic_names(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Record which parameters the per-sample estimator sends to the torch.func path."""
    names: set[str] = set()
    original = fisher_module._vmap_accumulate

    def spy(model, loss_fn, batch, size, params, sums):
        names.update(params)
        return original(model, loss_fn, batch, size, params, sums)

    monkeypatch.setattr(fisher_module, "_vmap_accumulate", spy)
    return names


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_per_sample_conv_bn_embedding_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    model, data = make(ConvEmbed), conv_data()
    got = diagonal_fisher(model, mse_loss, loader(data, 4), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data))
    assert names == {n for n, _ in model.named_parameters()} - {"head.weight", "head.bias"}


def test_per_sample_reused_linear_falls_back_and_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    model, data = make(Reuse), reuse_data()
    got = diagonal_fisher(model, mse_loss, loader(data, 3), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data))
    # called twice, fed a 3-D input, weight also used functionally -> generic; `plain` stays on hooks
    assert names == {"twice.weight", "twice.bias", "seq.weight", "seq.bias", "side.weight", "side.bias"}


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize(
    ("model_cls", "data_fn"), [(MLP, mlp_data), (ConvEmbed, conv_data), (Reuse, reuse_data)]
)
def test_per_sample_vmap_equals_per_sample(model_cls: type[nn.Module], data_fn) -> None:
    model, batches = make(model_cls), loader(data_fn(), 4)
    fast = diagonal_fisher(model, mse_loss, batches, estimator="per_sample")
    slow = diagonal_fisher(model, mse_loss, batches, estimator="per_sample_vmap")
    assert_fisher_close(fast, {k: v.double() for k, v in slow.items()})


def test_vmap_chunks_give_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    model, batches = make(MLP), loader(mlp_data(), 5)
    whole = diagonal_fisher(model, mse_loss, batches, estimator="per_sample_vmap")
    monkeypatch.setattr(fisher_module, "_VMAP_ELEMENT_BUDGET", 200)  # about 2 samples per chunk
    chunked = diagonal_fisher(model, mse_loss, batches, estimator="per_sample_vmap")
    assert_fisher_close(chunked, {k: v.double() for k, v in whole.items()})


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("estimator", ["batch", "per_sample", "per_sample_vmap"])
def test_model_state_is_left_unchanged(estimator: str) -> None:
    model, batches = make(ConvEmbed), loader(conv_data(), 4)
    model.train()
    model.norm.eval()  # a mixed-mode model must come back mixed
    model.embed.weight.requires_grad_(False)
    model.conv.weight.grad = torch.full_like(model.conv.weight, 7.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = diagonal_fisher(model, mse_loss, batches, estimator=estimator)
    assert "embed.weight" not in got and "conv.weight" in got
    assert model.training and model.conv.training and not model.norm.training
    assert not model.embed.weight.requires_grad and model.head.weight.requires_grad
    assert torch.equal(model.conv.weight.grad, torch.full_like(model.conv.weight, 7.0))
    assert all(p.grad is None for n, p in model.named_parameters() if n != "conv.weight")
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # includes BatchNorm running statistics


def test_named_parameters_subset_including_frozen() -> None:
    model, data = make(MLP), mlp_data()
    want = brute_per_sample(model, data)
    model.out.bias.requires_grad_(False)
    got = diagonal_fisher(
        model, mse_loss, loader(data, 4), "per_sample", parameters=["out.bias", "out.weight"]
    )
    assert_fisher_close(got, {"out.bias": want["out.bias"], "out.weight": want["out.weight"]})
    assert not model.out.bias.requires_grad


class SqrtBias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(2, 3))
        self.b = nn.Parameter(torch.zeros(3))

    def forward(self, batch: Batch) -> torch.Tensor:
        return batch["x"] @ self.a + self.b.abs().sqrt()  # d sqrt(|b|) / db is not finite at b = 0


@pytest.mark.parametrize("estimator", ["batch", "per_sample", "per_sample_vmap"])
def test_non_finite_fisher_names_the_parameter(estimator: str) -> None:
    data = {"x": torch.randn(4, 2), "y": torch.randn(4, 3)}
    with pytest.raises(CrossforgetError, match=r"parameter 'b' contains NaN or Inf"):
        diagonal_fisher(SqrtBias(), mse_loss, loader(data, 2), estimator=estimator)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"estimator": "exact"}, "unknown Fisher estimator"),
        ({"parameters": ["nope"]}, "unknown parameter name"),
        ({"parameters": []}, "no parameters"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(CrossforgetError, match=message):
        diagonal_fisher(make(MLP), mse_loss, loader(mlp_data(), 4), **kwargs)


@pytest.mark.parametrize("estimator", ["batch", "per_sample"])
def test_empty_loader_is_an_error(estimator: str) -> None:
    with pytest.raises(CrossforgetError, match="loader is empty"):
        diagonal_fisher(make(MLP), mse_loss, [], estimator=estimator)


def test_per_sample_loss_shape_is_checked() -> None:
    def scalar_only(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        return mse_loss(model, batch)

    with pytest.raises(CrossforgetError, match="one loss per sample"):
        diagonal_fisher(make(MLP), scalar_only, loader(mlp_data(), 4), estimator="per_sample")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_silent_without_terminal_and_drawn_on_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    model, batches = make(MLP), loader(mlp_data(), 4)
    quiet = diagonal_fisher(model, mse_loss, batches, progress="Fisher (forget)")
    assert capsys.readouterr() == ("", "")
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    drawn = diagonal_fisher(model, mse_loss, batches, progress="Fisher (forget)")
    assert "Fisher (forget)" in terminal.getvalue()
    assert_fisher_close(drawn, {k: v.double() for k, v in quiet.items()})
