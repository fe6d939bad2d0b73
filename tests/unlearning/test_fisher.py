"""Diagonal Fisher estimators against their definitions, computed by brute force in the test."""

from __future__ import annotations

import io
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from crossforget.core.errors import CrossforgetError
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
    n = batch_size(data)
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


def brute_per_sample(model: nn.Module, data: Batch, loss_fn=mse_loss) -> dict[str, torch.Tensor]:
    """Eq. 4 by definition: one sample at a time, backward, square, mean over samples (eval mode)."""
    model.eval()
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    sums = {n: torch.zeros_like(p) for n, p in named.items()}
    n = batch_size(data)
    for i in range(n):
        loss = loss_fn(model, {k: v[i : i + 1] for k, v in data.items()}, reduction="none").sum()
        grads = torch.autograd.grad(loss, list(named.values()), allow_unused=True)
        for name, g in zip(named, grads, strict=True):
            if g is not None:
                sums[name] += g.square()
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
        torch.testing.assert_close(value, want[name].float(), rtol=1e-5, atol=1e-9, msg=name)


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
    assert names == {"bag.weight"}  # EmbeddingBag has no closed form here


def test_per_sample_reused_linear_falls_back_and_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    model, data = make(Reuse), reuse_data()
    got = diagonal_fisher(model, mse_loss, loader(data, 3), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data))
    # called twice, weight also used functionally -> generic; `plain` and `seq` (3-D input) stay on hooks
    assert names == {"twice.weight", "twice.bias", "side.weight", "side.bias"}


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
    monkeypatch.setattr(fisher_module, "_ELEMENT_BUDGET", 200)  # about 2 samples per chunk
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


# --- closed forms per layer type, against the one-sample-at-a-time definition and torch.func ---


def feature_loss(model: nn.Module, batch: Batch, reduction: str = "mean") -> torch.Tensor:
    """Per sample: a smooth functional of the model's flattened output, weighted differently per sample."""
    h = model(batch).flatten(1)
    per_sample = (torch.sin(h) * batch["w"]).sum(dim=1) + 0.5 * h.square().mean(dim=1)
    return per_sample.mean() if reduction == "mean" else per_sample


class Single(nn.Module):
    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.layer(batch["x"])


def randomise_norms(model: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so no term of a closed form vanishes."""
    for module in model.modules():
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)) and module.track_running_stats:
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            if module.bias is not None:
                nn.init.uniform_(module.bias, -0.5, 0.5)


def token_ids(n: int, shape: tuple[int, ...], vocab: int, g: torch.Generator) -> torch.Tensor:
    ids = torch.randint(1, vocab, (n, *shape), generator=g)
    flat = ids.view(n, -1)
    flat[:, 1] = flat[:, 0]  # a token repeated inside each sample: its rows' gradients add up
    flat[::2, -2:] = 0  # padding (id 0) in every other sample
    return ids


LAYERS = {
    "conv": (lambda: nn.Conv2d(2, 3, 3), lambda g, n: torch.randn(n, 2, 6, 6, generator=g)),
    "conv-strided-padded-dilated": (
        lambda: nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2)),
        lambda g, n: torch.randn(n, 2, 7, 6, generator=g),
    ),
    "conv-same-no-bias": (
        lambda: nn.Conv2d(2, 3, 3, padding="same", dilation=2, bias=False),
        lambda g, n: torch.randn(n, 2, 6, 5, generator=g),
    ),
    "conv-valid": (
        lambda: nn.Conv2d(2, 3, 2, stride=2, padding="valid"),
        lambda g, n: torch.randn(n, 2, 5, 5, generator=g),
    ),
    "conv-channels-last": (  # the layout image batches of the preprocessor have
        lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1),
        lambda g, n: torch.randn(n, 3, 7, 7, generator=g).contiguous(memory_format=torch.channels_last),
    ),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), lambda g, n: torch.randn(n, 3, 4, 3, generator=g)),
    "batchnorm2d-channels-last": (
        lambda: nn.BatchNorm2d(3),
        lambda g, n: torch.randn(n, 3, 4, 3, generator=g).contiguous(memory_format=torch.channels_last),
    ),
    "batchnorm1d": (lambda: nn.BatchNorm1d(4), lambda g, n: torch.randn(n, 4, generator=g)),
    "batchnorm1d-sequence": (lambda: nn.BatchNorm1d(4), lambda g, n: torch.randn(n, 4, 5, generator=g)),
    "layernorm": (lambda: nn.LayerNorm(5), lambda g, n: torch.randn(n, 3, 5, generator=g)),
    "layernorm-flat": (lambda: nn.LayerNorm(5), lambda g, n: torch.randn(n, 5, generator=g)),
    "layernorm-two-dims": (lambda: nn.LayerNorm((3, 4)), lambda g, n: torch.randn(n, 2, 3, 4, generator=g)),
    "embedding-padding-idx": (
        lambda: nn.Embedding(9, 3, padding_idx=0),
        lambda g, n: token_ids(n, (6,), 9, g),
    ),
    "embedding": (lambda: nn.Embedding(9, 3), lambda g, n: token_ids(n, (2, 3), 9, g)),
    "linear-3d": (lambda: nn.Linear(4, 3), lambda g, n: torch.randn(n, 5, 4, generator=g)),
    "linear-4d": (lambda: nn.Linear(4, 3), lambda g, n: torch.randn(n, 2, 3, 4, generator=g)),
    "linear-2d": (lambda: nn.Linear(4, 3), lambda g, n: torch.randn(n, 4, generator=g)),
}


def single_layer(case: str, n: int = 7) -> tuple[nn.Module, Batch]:
    make_layer, make_input = LAYERS[case]
    torch.manual_seed(0)
    model = Single(make_layer()).double()
    randomise_norms(model)
    g = torch.Generator().manual_seed(4)
    x = make_input(g, n)
    x = x.double() if x.is_floating_point() else x
    model.eval()
    with torch.no_grad():
        features = model({"x": x}).flatten(1).shape[1]
    return model, {"x": x, "w": torch.randn(n, features, generator=g, dtype=torch.float64)}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_layer_closed_form_is_exact(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    model, data = single_layer(case)
    batches = loader(data, 3)  # 7 samples: batches of 3, 3 and 1
    fast = diagonal_fisher(model, feature_loss, batches, estimator="per_sample")
    assert names == set(), "the closed form must handle this layer"
    want = brute_per_sample(model, data, feature_loss)
    assert_fisher_close(fast, want)
    slow = diagonal_fisher(model, feature_loss, batches, estimator="per_sample_vmap")
    assert_fisher_close(fast, {k: v.double() for k, v in slow.items()})


@pytest.mark.parametrize("case", ["conv-strided-padded-dilated", "conv-channels-last", "linear-3d"])
def test_closed_forms_in_sample_chunks(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model, data = single_layer(case)
    monkeypatch.setattr(fisher_module, "_ELEMENT_BUDGET", 1)  # one sample per chunk
    got = diagonal_fisher(model, feature_loss, loader(data, 4), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data, feature_loss))


class Shared(nn.Module):
    """Layers whose gradients the closed forms would get wrong, next to one they get right."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)  # called twice
        self.norm = nn.BatchNorm2d(2)  # weight also used outside the layer
        self.side = nn.Conv2d(2, 2, 1)  # weight also used functionally
        self.embed = nn.Embedding(6, 4, padding_idx=0)
        self.tied = nn.Linear(4, 6)
        self.tied.weight = self.embed.weight  # tied input and output embeddings
        self.ln = nn.LayerNorm(4)  # called twice
        self.plain = nn.Conv2d(2, 1, 3)  # an ordinary layer: stays on the closed form
        self.dropped = nn.Linear(4, 4)  # called, output unused: zero Fisher, no generic path needed
        self.idle = nn.LayerNorm(4)  # never called: zero Fisher too

    def forward(self, batch: Batch) -> torch.Tensor:
        h = self.conv(torch.relu(self.conv(batch["image"])))
        h = self.norm(h) * self.norm.weight.mean()
        h = self.side(h) + F.conv2d(h.square(), self.side.weight)
        text = self.ln(self.ln(self.embed(batch["tokens"]).mean(dim=1)))
        self.dropped(text)
        return torch.cat([self.plain(h).flatten(1), self.tied(text)], dim=1)


def test_reused_and_tied_layers_fall_back_and_stay_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    torch.manual_seed(0)
    model = Shared().double()
    randomise_norms(model)
    g = torch.Generator().manual_seed(5)
    n = 5
    data = {
        "image": torch.randn(n, 2, 4, 4, generator=g, dtype=torch.float64),
        "tokens": token_ids(n, (4,), 6, g),
    }
    model.eval()
    with torch.no_grad():
        features = model(data).shape[1]
    data["w"] = torch.randn(n, features, generator=g, dtype=torch.float64)
    got = diagonal_fisher(model, feature_loss, loader(data, 2), estimator="per_sample")
    assert_fisher_close(got, brute_per_sample(model, data, feature_loss))
    closed = {f"{layer}.{role}" for layer in ("plain", "dropped", "idle") for role in ("weight", "bias")}
    assert names == {n for n, _ in model.named_parameters()} - closed
    assert not any(got[n].any() for n in closed if not n.startswith("plain"))


def dsph_setup(n: int = 10) -> tuple[nn.Module, nn.Module, Batch]:
    """The default small hashing model, narrow, on real scenes batches, with the DSPH loss as PPP uses it."""
    from crossforget.data.scenes.generate import generate_scenes
    from crossforget.losses.dsph import DSPHLoss
    from crossforget.models.factory import build_hasher
    from crossforget.models.inputs import TensorStore
    from crossforget.models.tokenizer import WordTokenizer

    data = generate_scenes(n, 32, 0)
    tokenizer = WordTokenizer.build([c for caps in data.captions for c in caps])
    config = {"backbone": "small", "cnn_width": 2, "feature_dim": 6, "embed_dim": 5, "bits": 16,
              "image_size": 32, "tokenizer": tokenizer.to_config()}  # fmt: skip
    torch.manual_seed(0)
    model, preprocessor = build_hasher(config)
    batch = TensorStore(data, preprocessor).batch(torch.arange(n))
    model.train()
    with torch.no_grad():  # running statistics from the data, as training leaves them
        model(batch)
    model.double()
    randomise_norms(model.image_encoder)
    loss = DSPHLoss(data.num_classes, 16).double()
    loss.proxies.requires_grad_(False)  # PPP holds the trained proxies fixed
    batch = {k: v.double() if v.is_floating_point() else v for k, v in batch.items()}
    return model, loss, batch


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_small_hashing_model_with_dsph_loss_is_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    names = generic_names(monkeypatch)
    model, loss, data = dsph_setup()
    assert data["images"].is_contiguous(memory_format=torch.channels_last)  # as the store hands them out
    batches = loader(data, 4)
    fast = diagonal_fisher(model, loss, batches, estimator="per_sample")
    assert names == set(), "every layer of the small model must take a closed form"
    assert set(fast) == {n for n, _ in model.named_parameters()}
    assert_fisher_close(fast, brute_per_sample(model, data, loss))
    slow = diagonal_fisher(model, loss, batches, estimator="per_sample_vmap")
    assert_fisher_close(fast, {k: v.double() for k, v in slow.items()})


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_tiny_clip_with_dsph_loss_is_exact(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CLIP: Conv2d patches, LayerNorm and Linear on (B, T, D), token embeddings take the closed forms;
    the class token and the position embeddings (shared by all samples of a batch) fall back."""
    pytest.importorskip("transformers")
    from crossforget.losses.dsph import DSPHLoss
    from crossforget.tasks.hashing.training import initial_model, model_config
    from tests.models.test_clip import write_tiny_clip

    folder = write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")
    model, preprocessor = initial_model(
        model_config(None, None, 16, {"backbone": "clip", "clip_model": str(folder)})
    )
    model.double()
    g = torch.Generator().manual_seed(6)
    n = 5
    ids, mask = preprocessor.texts(["the dog", "a cat and the dog", "dog", "the cat on the dog", "cat"])
    pixels = torch.randint(0, 256, (n, 32, 32, 3), generator=g, dtype=torch.uint8)
    labels = (torch.rand(n, 6, generator=g) < 0.4).double()
    labels[:, 0] = 1.0  # at least one label per sample
    images = preprocessor.images(pixels).double()
    data = {"images": images, "text_ids": ids, "text_mask": mask, "labels": labels}
    loss = DSPHLoss(6, 16).double()
    loss.proxies.requires_grad_(False)
    names = generic_names(monkeypatch)
    fast = diagonal_fisher(model, loss, loader(data, 3), estimator="per_sample")
    assert names == {
        "image_encoder.vision_model.embeddings.class_embedding",
        "image_encoder.vision_model.embeddings.position_embedding.weight",
        "text_encoder.text_model.embeddings.position_embedding.weight",
    }
    assert_fisher_close(fast, brute_per_sample(model, data, loss))


@pytest.mark.filterwarnings("ignore:There is a performance drop")
def test_batch_norm_without_running_statistics_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """Batch statistics couple the samples of a batch: Eq. 4 then means each sample normalised alone."""
    names = generic_names(monkeypatch)
    torch.manual_seed(0)
    model = Single(nn.BatchNorm2d(3, track_running_stats=False)).double()
    randomise_norms(model)
    g = torch.Generator().manual_seed(7)
    data = {"x": torch.randn(5, 3, 2, 2, generator=g, dtype=torch.float64)}
    data["w"] = torch.randn(5, 12, generator=g, dtype=torch.float64)
    got = diagonal_fisher(model, feature_loss, loader(data, 3), estimator="per_sample")
    assert names == {"layer.weight", "layer.bias"}
    assert_fisher_close(got, brute_per_sample(model, data, feature_loss))


class OverwrittenInput(nn.Module):
    """The layer's input is changed in place after the layer ran: its saved input is gone."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, batch: Batch) -> torch.Tensor:
        x = batch["x"].clone()
        h = self.lin(x)
        x.mul_(2.0)
        return h + x[:, :3]


def test_input_overwritten_in_place_is_an_error_not_a_wrong_value() -> None:
    data = {"x": torch.randn(4, 4), "y": torch.randn(4, 3)}
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        diagonal_fisher(OverwrittenInput(), mse_loss, [data])  # what plain autograd says
    with pytest.raises(CrossforgetError, match="modified by an inplace operation"):
        diagonal_fisher(OverwrittenInput(), mse_loss, [data], estimator="per_sample")


def test_speed_benchmark_runs_tiny() -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fisher_speed.py"
    spec = importlib.util.spec_from_file_location("fisher_speed", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    threads = torch.get_num_threads()
    try:
        summary = script.main(["--items", "200", "--samples", "12", "--batch", "8", "--repeats", "1"])
    finally:
        torch.set_num_threads(threads)
    assert summary["samples"] == 12 and summary["generic_path_layers"] == 0
    seconds = summary["seconds"]
    assert summary["ratio"] == pytest.approx(seconds["per_sample"] / seconds["batch"])
    assert summary["passed"] == (summary["ratio"] <= 2.0)
    diff = summary["max_relative_difference"]
    assert diff["per_sample_vs_one_at_a_time"] < 1e-5 and diff["float64_per_sample_vs_vmap"] < 1e-5
