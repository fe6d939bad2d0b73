"""Forget requests on the tiny index: what is deleted, re-encoded, recorded; sequential requests; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from crossforget.data.splits import RetrievalSplit
from crossforget.index.forget import IndexForgetRequest, forget, remaining_split
from crossforget.index.search import Searcher
from crossforget.index.store import audit_log, open_index
from tests.index.conftest import FAST_PPP

FAST = {"neighbour_samples": 50, "retain_samples": 100}


def test_class_request_with_item_deletion(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before = open_index(index_copy)
    dog = before.class_names.index("dog")
    ids = tmp_path / "ids.txt"
    ids.write_text("# two items\n0\n4\n")
    args = [
        "forget",
        str(index_copy),
        "--classes",
        "dog",
        "--items",
        str(ids),
        "--delete-class-items",
        *FAST_PPP,
    ]
    assert main([*args, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    after = open_index(index_copy)
    carrying = {str(i) for i in before.item_ids[before.labels[:, dog] == 1]}
    assert set(record["deleted_items"]) == carrying | {"0", "4"}
    assert after.ids.size == before.ids.size - len(record["deleted_items"])
    assert not after.labels[:, dog].any() and not {"0", "4"} & set(after.item_ids.tolist())
    assert record["model_before"] == before.model_sha256 != record["model_after"] == after.model_sha256
    assert record["index_before"]["version"] == "v000000" and record["index_after"]["version"] == "v000001"
    assert record["request"]["method"] == "ppp" and record["request"]["options"]["retain_budget"] == 1.0
    assert set(record["durations"]) >= {"unlearn", "delete", "encode", "verify", "write"}
    check = record["verification"]
    for when in ("before", "after"):
        assert 0 <= check[when]["I2T"]["D_f"] <= 1 and 0 <= check[when]["T2I"]["D_r"] <= 1
        assert 0 <= check[when]["mia"] <= 1
    assert check["before"] != check["after"]
    assert [p.name for p in (index_copy / "versions").iterdir()] == ["v000001"]  # the old model is gone
    hits = Searcher(index_copy).search_text("a dog on a beach", k=50).hits
    assert not {h.item for h in hits} & set(record["deleted_items"])


def test_codes_are_the_new_models_codes(index_copy: Path) -> None:
    from crossforget.index.encode import encode_items
    from crossforget.tasks.hashing.training import load_data

    forget(index_copy, IndexForgetRequest(classes=["cat"], options=FAST), log=lambda text: None)
    after = open_index(index_copy)
    loaded = load_data(after.model.dataset_spec)
    fresh = encode_items(after.model.model, loaded.store_for(after.model.preprocessor), after.ids)
    np.testing.assert_array_equal(fresh["image"], after.codes("image"))
    np.testing.assert_array_equal(fresh["text"], after.codes("text"))


def test_items_only_request_keeps_the_model_and_codes(index_copy: Path) -> None:
    before = open_index(index_copy)
    record = forget(index_copy, IndexForgetRequest(items=["0", "6"]), log=lambda text: None)
    after = open_index(index_copy)
    assert record["model_after"] == record["model_before"] and record["request"]["method"] is None
    keep = ~np.isin(before.item_ids, ["0", "6"])
    np.testing.assert_array_equal(after.codes("text"), before.codes("text")[keep])
    with pytest.raises(CrossforgetError, match="deleted by audit record #1"):
        forget(index_copy, IndexForgetRequest(items=["6"]), log=lambda text: None)


def test_sequential_requests_accumulate(index_copy: Path) -> None:
    forget(index_copy, IndexForgetRequest(classes=["dog"], options=FAST), log=lambda text: None)
    second = forget(
        index_copy, IndexForgetRequest(classes=["cat"], options=FAST, seed=1), log=lambda text: None
    )
    assert second["forgotten_classes"] == ["cat", "dog"]  # in the order of the class list
    assert second["index_before"]["version"] == "v000001" and second["seq"] == 2
    assert open_index(index_copy).meta["forgotten_classes"] == second["forgotten_classes"]
    assert audit_log(index_copy).verify() == []


def test_remaining_split_leaves_out_deleted_items_and_forgotten_training_samples() -> None:
    labels = np.zeros((10, 3), dtype=np.uint8)
    labels[[2, 5, 8], 1] = 1
    split = RetrievalSplit(
        query=np.array([0, 1]), train=np.array([2, 3, 4, 5]), database=np.arange(2, 10), seed=0
    )
    view = remaining_split(split, present=np.array([2, 3, 4, 5, 6, 8, 9]), labels=labels, forgotten=[1])
    np.testing.assert_array_equal(view.train, [3, 4])  # 2 and 5 carry the forgotten class
    np.testing.assert_array_equal(view.database, [3, 4, 6, 8, 9])  # 7 was deleted; 8 is held out
    np.testing.assert_array_equal(view.query, [0, 1])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--classes", "doggo"], "unknown class 'doggo'; valid classes: person"),
        (["--classes", "dog", "--alpha", "-3"], "alpha"),
        (["--classes", "dog", "--method", "nope"], "nope"),
        (["--delete-class-items"], "needs --classes"),
        (["--items", "ITEMS", "--alpha", "5"], "method options apply to class requests"),
        ([], "needs --classes"),
    ],
)
def test_bad_requests_are_one_line_and_change_nothing(
    index_copy: Path, tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture
) -> None:
    head = audit_log(index_copy).head().hash
    items = tmp_path / "ids.txt"
    items.write_text("0\n")
    extra = [str(items) if arg == "ITEMS" else arg for arg in extra]
    assert main(["forget", str(index_copy), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert audit_log(index_copy).head().hash == head and open_index(index_copy).name == "v000000"


def test_unknown_item_lists_what_exists(
    index_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("2\n")  # a query item of the split: never indexed
    assert main(["forget", str(index_copy), "--items", str(ids)]) == 2
    err = capsys.readouterr().err
    assert "unknown item id '2'" in err and "holds 340 items with ids such as 0, 1" in err
    ids.write_bytes(b"\xff\xfe")
    assert main(["forget", str(index_copy), "--items", str(ids)]) == 2
    assert "not UTF-8" in capsys.readouterr().err


def test_a_busy_index_refuses_a_second_request(index_copy: Path, capsys: pytest.CaptureFixture) -> None:
    from crossforget.index.store import acquire_lock

    held = acquire_lock(index_copy, "a forget request (dog)")
    try:
        assert main(["forget", str(index_copy), "--classes", "cat"]) == 2
    finally:
        held.release()
    assert "is busy: a forget request (dog) by pid" in capsys.readouterr().err
