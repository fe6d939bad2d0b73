"""The on-disk index: layout, integrity checks on open, the lock, and the CLI's build/info errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from crossforget.cli import main
from crossforget.core.errors import CrossforgetError
from crossforget.index.encode import check_bits
from crossforget.index.store import IndexBusy, acquire_lock, open_index, read_manifest


def test_build_layout_and_info(tiny_index: Path, capsys: pytest.CaptureFixture) -> None:
    version = tiny_index / "versions" / "v000000"
    names = {p.name for p in version.iterdir()}
    assert names == {"version.json", "model", "image.faiss", "text.faiss", "items.npz"}
    manifest = read_manifest(tiny_index)
    assert manifest["bits"] == 16 and manifest["format"] == "crossforget-index/1"
    opened = open_index(tiny_index)
    assert opened.model_sha256 == manifest["source_checkpoint"]["sha256"]  # the build copies the model
    assert list(opened.ids) == sorted(opened.ids) and opened.ids.size == 340
    assert main(["index", "info", str(tiny_index), "--json", "--items"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "v000000" and info["items"] == 340 and len(info["item_ids"]) == 340
    assert info["audit_records"] == 1 and info["forgotten_classes"] == []


def test_build_with_ivf_records_its_recall(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "ivf"
    ck = str(tiny_checkpoint / "bits16")
    assert main(["index", "build", "--checkpoint", ck, "--out", str(out), "--ivf", "8", "--nprobe", "8"]) == 0
    recall = read_manifest(out)["ivf"]["recall_at_10"]
    assert recall["I2T"]["tie_aware_recall"] == 1.0 and recall["T2I"]["tie_aware_recall"] == 1.0  # probes all
    assert (out / "versions" / "v000000" / "image.ivf.faiss").is_file()
    assert main(["index", "build", "--checkpoint", ck, "--out", str(tmp_path / "x"), "--ivf", "1000"]) == 2


def test_build_refuses_bad_input(
    tiny_checkpoint: Path, tiny_index: Path, capsys: pytest.CaptureFixture
) -> None:
    ck = str(tiny_checkpoint / "bits16")
    assert main(["index", "build", "--checkpoint", ck, "--out", str(tiny_index)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (
        main(
            [
                "index",
                "build",
                "--checkpoint",
                str(tiny_checkpoint),
                "--out",
                str(tiny_index) + "2",
                "--num-query",
                "5",
            ]
        )
        == 2
    )
    assert "split" in capsys.readouterr().err
    with pytest.raises(CrossforgetError, match="multiple of 8"):
        check_bits(12)


@pytest.mark.parametrize(
    ("target", "damage", "message"),
    [
        ("versions/v000000/image.faiss", b"garbage", "image.faiss is corrupt"),
        ("versions/v000000/items.npz", b"", "items.npz is corrupt"),
        ("versions/v000000/model/weights.safetensors", b"x", "weights.safetensors is corrupt"),
        ("versions/v000000/version.json", b"{}", "does not match the audit log"),
        ("manifest.json", b"{not json", "manifest.json (the index manifest) is not readable JSON"),
        ("manifest.json", b'{"format": "other"}', "expected 'crossforget-index/1'"),
    ],
)
def test_damaged_files_are_one_error(
    index_copy: Path, target: str, damage: bytes, message: str, capsys: pytest.CaptureFixture
) -> None:
    (index_copy / target).write_bytes(damage)
    with pytest.raises(CrossforgetError, match="rebuild it"):
        open_index(index_copy)
    assert main(["search", str(index_copy), "--text", "a dog"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_a_truncated_faiss_file_is_one_error_not_a_crash(index_copy: Path) -> None:
    """Past the hash check (e.g. version.json rewritten to match), the bytes must still parse."""
    from crossforget.index.store import read_faiss

    path = index_copy / "versions" / "v000000" / "text.faiss"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CrossforgetError, match="cannot be read as a FAISS index"):
        read_faiss(path)


def test_not_an_index_and_another_checkpoint(tiny_index: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CrossforgetError, match="not a crossforget index"):
        open_index(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "weights.safetensors"):
        (other / name).write_bytes((tiny_checkpoint / "bits16" / name).read_bytes())
    open_index(tiny_index, checkpoint=other)  # the same bytes: the same model
    config = json.loads((other / "config.json").read_text())
    config["training"]["seed"] = 99
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(CrossforgetError, match="would not be comparable"):
        open_index(tiny_index, checkpoint=other)


def test_lock_is_exclusive_and_names_its_holder(index_copy: Path) -> None:
    held = acquire_lock(index_copy, "a test")
    with pytest.raises(IndexBusy, match=r"busy: a test by pid \d+"):
        acquire_lock(index_copy, "another")
    held.release()
    acquire_lock(index_copy, "again").release()
