"""Method options are type- and range-checked in one place, NaN/Inf never produce a model (issue 11, part 2).

Before: ``--lambda nan``, ``--option eps=nan``, ``lr_scale=nan``, ``train --lr nan`` wrote models with
hundreds of thousands of NaN weights (exit 0); ``--alpha nan`` silently dampened everything;
``retrain --epochs -1`` returned the random initialisation; ``forget_samples=all`` crashed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import typing
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossforget.core.checkpoint import Checkpoint, non_finite_tensors, save_checkpoint
from crossforget.core.errors import CrossforgetError
from crossforget.unlearning.methods import method_names, method_options, validate_options
from tests.conftest import TINY_DATA
from tests.reliability import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def work(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("options")
    shutil.copytree(tiny_checkpoint, work / "K")
    return work


def _unlearn(work: Path, method: str, *extra: str) -> list[str]:
    return [
        "unlearn",
        "--checkpoint",
        work / "K",
        "--method",
        method,
        "--forget",
        "dog",
        "--out",
        work / "o",
        *extra,
    ]


BAD_METHOD_OPTIONS = [
    ("ppp", ["--lambda", "nan"], "finite"),
    ("ppp", ["--lambda", "inf"], "finite"),
    ("ppp", ["--lambda-max", "nan"], "finite"),
    ("ppp", ["--option", "eps=nan"], "finite"),
    ("ppp", ["--alpha", "nan"], "finite"),
    ("ppp", ["--tau", "nan"], "finite"),
    ("ppp", ["--alpha", "abc"], "must be a number"),
    ("ppp", ["--option", "alpha=abc"], "must be a number"),
    ("ppp", ["--option", "forget_samples=abc"], "whole number or 'all'"),
    ("ppp", ["--option", "forget_samples=2.5"], "whole number or 'all'"),
    ("ppp", ["--forget-samples", "0"], "must be >= 1"),
    ("ppp", ["--option", "k=2.5"], "whole number"),
    ("ppp", ["--k", "0"], "must be >= 1"),
    ("ppp", ["--option", "batch_size=0"], "must be >= 1"),
    ("ppp", ["--option", "prototype_modality=audio"], "one of 'both', 'image', 'text'"),
    ("ppp", ["--estimator", "exact"], "one of 'batch', 'per_sample'"),
    ("ppp", ["--option", "nosuch=1"], "has no option"),
    ("ssd", ["--lambda", "nan"], "finite"),
    ("ssd", ["--option", "use_stored_fisher=3"], "true or false"),
    ("finetune", ["--option", "lr_scale=nan"], "finite"),
    ("finetune", ["--option", "lr_scale=-1"], "must be > 0"),
    ("finetune", ["--epochs", "0"], "must be >= 1"),
    ("retrain", ["--epochs", "-1"], "must be >= 1"),
    ("bad_teacher", ["--option", "retain_fraction=1.5"], "must be >= 0 and <= 1"),
    ("bad_teacher", ["--option", "lr=0"], "must be > 0"),
    ("amnesiac", ["--option", "batch_size=-3"], "must be >= 1"),
]


@pytest.mark.parametrize(("method", "extra", "message"), BAD_METHOD_OPTIONS)
def test_bad_method_option_is_one_line(method, extra, message, work: Path, capsys) -> None:
    assert_clean_error(_unlearn(work, method, *extra), capsys, [work], message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"5", "holds a JSON int"),
        (b'{"params": [1, 2]}', "holds a JSON list"),
        (b'["ab"]', "holds a JSON list"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{" * 100_000, "not valid JSON"),
        (b'{"method": "ssd", "params": {"alpha": 3}}', "parameters for 'ssd'"),
        (b'{"alpha": "NaN"}', "must be a number"),
        (b'{"alpha": 1e999}', "finite"),
        (b'{"forget_samples": true}', "whole number"),
    ],
)
def test_bad_params_file_is_one_line(content: bytes, message: str, work: Path, capsys) -> None:
    params = work / "params.json"
    params.write_bytes(content)
    try:
        assert_clean_error(_unlearn(work, "ppp", "--params", params), capsys, [work], message)
    finally:
        params.unlink()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", *TINY_DATA, "--lr", "nan", "--out", "{W}/t"], "not a finite number"),
        (["train", *TINY_DATA, "--head-lr=-inf", "--out", "{W}/t"], "not a finite number"),
        (["train", *TINY_DATA, "--image-memory", "nan", "--out", "{W}/t"], "not a finite number"),
        (["tune", "--method", "ppp", "--checkpoint", "{W}/K", "--fix", "k=abc"], "whole number"),
        (["tune", "--method", "ppp", "--checkpoint", "{W}/K", "--range", "alpha=nan:5"], "finite numbers"),
        (["tune", "--method", "ssd", "--checkpoint", "{W}/K", "--option", "batch_size=0"], "must be >= 1"),
        (["sweep", "samples", "--checkpoint", "{W}/K", "--method-option", "ppp.tau=inf"], "finite"),
        (["table1", "--forget", "dog", "--method-option", "ppp.k=x", "--out", "{W}/t"], "whole number"),
    ],
)
def test_bad_numbers_of_other_commands(argv, message, work: Path, capsys) -> None:
    filled = [a.format(W=work) for a in argv]
    assert_clean_error(filled, capsys, [work], message)


def test_all_means_every_sample(work: Path) -> None:
    """``forget_samples=all`` (what the budget error suggests) now works and means None."""
    assert validate_options("ppp", {"forget_samples": "all", "k": 3.0}) == {"forget_samples": None, "k": 3}


def test_non_finite_result_is_not_saved(work: Path, capsys) -> None:
    """A valid but absurd learning rate diverges: the error names it and nothing is written."""
    argv = _unlearn(work, "finetune", "--option", "lr_scale=1e38", "--epochs", "1")
    assert_clean_error(argv, capsys, [work], "NaN/Inf values", before_work=False)


def test_failed_evaluation_leaves_no_checkpoint(work: Path, capsys, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise CrossforgetError("evaluation failed")

    monkeypatch.setattr("crossforget.tasks.hashing.evaluation_run.evaluate_checkpoints", fail)
    argv = _unlearn(work, "bad_model", "--evaluate")
    assert_clean_error(argv, capsys, [work], "evaluation failed", before_work=False)


def test_save_refuses_non_finite_weights_but_allows_empty_class_prototypes(tmp_path: Path) -> None:
    prototypes = torch.tensor([[0.5, -0.5], [math.nan, math.nan]])
    good = Checkpoint({}, {"w": torch.ones(2)}, extras={"prototypes": {"image": prototypes}})
    save_checkpoint(tmp_path / "good", good)
    partly = torch.tensor([[0.5, math.nan], [math.nan, math.nan]])
    assert non_finite_tensors({"prototypes.image": partly}) == {"prototypes.image": 1}  # row 2 is empty
    for state in ({"w": torch.tensor([1.0, math.inf])}, {"w": torch.tensor([math.nan, 0.0])}):
        with pytest.raises(CrossforgetError, match="nothing was saved"):
            save_checkpoint(tmp_path / "bad", Checkpoint({}, state))
    assert not (tmp_path / "bad").exists()


# --- property tests over every registered method's options ---------------------------------------

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
FIELDS = [(name, f) for name in method_names() for f in dataclasses.fields(method_options(name))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), ANY_VALUE)
def test_any_value_is_either_accepted_as_its_type_or_refused_in_one_line(field_of, value) -> None:
    method, field = field_of
    try:
        checked = validate_options(method, {field.name: value})[field.name]
    except CrossforgetError as exc:
        assert "\n" not in str(exc) and field.name in str(exc)
        return
    hint = typing.get_type_hints(method_options(method))[field.name]
    if typing.get_origin(hint) is typing.Literal:
        assert checked in typing.get_args(hint)
    elif checked is not None:
        kind = next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))
        assert type(checked) is kind
        if kind is float:
            assert math.isfinite(checked)
    option = method_options(method)(**{field.name: checked})  # the dataclass takes what was accepted
    assert getattr(option, field.name) == checked


def test_every_default_passes_its_own_check() -> None:
    for method in method_names():
        defaults = dataclasses.asdict(method_options(method)())
        assert validate_options(method, defaults) == defaults, method


def test_params_round_trip_through_json(work: Path) -> None:
    """What ``unlearn`` records as options can be fed back with --params."""
    defaults = dataclasses.asdict(method_options("ppp")())
    params = work / "roundtrip.json"
    params.write_text(json.dumps({"method": "ppp", "params": defaults}))
    from crossforget.cli.common import read_params

    assert read_params(params, "ppp") == defaults
    params.unlink()
    assert run_cli(["unlearn", "--help"]) == 0


@settings(max_examples=80, deadline=None)
@given(st.sampled_from(FIELDS), st.text(max_size=12))
def test_any_option_text_from_the_command_line_is_accepted_or_one_line(field_of, text) -> None:
    """What ``--option KEY=TEXT`` does before any work: parse the text, then check it."""
    from crossforget.cli.common import parse_options

    method, field = field_of
    try:
        options = parse_options([f"{field.name}={text}"])
        validate_options(method, options)
    except CrossforgetError as exc:
        assert "\n" not in str(exc)
