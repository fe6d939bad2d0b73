"""One forget request on a live index, in stages, committed atomically.

Stages: ``unlearn`` (the chosen method on the serving model: PPP by default, its forgetting guard
on), ``delete`` (the listed items and, on request, every item carrying a forgotten class leave the
item set), ``encode`` (every item of the serving version through the new model: one forward pass
per item), ``verify`` (held-out mAP and MIA before and after, from the codes), ``write`` (the new
version folder, complete, under a temporary name, then renamed), ``commit`` (the audit record that
names the new version, one SQLite transaction: the atomic swap). A crash anywhere before the commit
leaves the previous version serving and intact; the next writer removes the leftovers.

Requests apply to the current model, so sequential requests accumulate: later requests train and
score on what remains, i.e. training samples of classes forgotten earlier and items deleted earlier
are left out of D_r, of the guard's probe and of the verification sets.

Fault injection: ``CROSSFORGET_FAULT_STAGE=<stage>`` makes the process SIGKILL itself when it reaches
that stage (``write``: half-way through writing the files; ``commit``: inside the transaction).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossforget.core.errors import CrossforgetError
from crossforget.core.reproducibility import environment_stamp
from crossforget.data.forget import ForgetRequest, carries_any
from crossforget.data.splits import RetrievalSplit
from crossforget.index import verify
from crossforget.index.audit import utc_now
from crossforget.index.encode import encode_items
from crossforget.index.store import (
    Hook,
    IndexVersion,
    VersionContent,
    WriterLock,
    audit_log,
    checkpoint_sha256,
    open_index,
    remove_other_versions,
    write_version,
    writer_lock,
)
from crossforget.tasks.hashing.task import run_method, store_for
from crossforget.tasks.hashing.training import load_data
from crossforget.unlearning.methods import create_method

STAGES = ("unlearn", "delete", "encode", "verify", "write", "commit")
FAULT_ENV = "CROSSFORGET_FAULT_STAGE"


def fault_hook_from_env() -> Hook:
    """The hook named by ``CROSSFORGET_FAULT_STAGE`` (none when unset): SIGKILL at that stage."""
    stage = os.environ.get(FAULT_ENV, "").strip()
    if not stage:
        return lambda name: None
    if stage not in STAGES:
        raise CrossforgetError(f"{FAULT_ENV}={stage!r} names no stage; stages: {', '.join(STAGES)}")

    def hook(name: str) -> None:
        if name == stage:
            print(f"{FAULT_ENV}={stage}: killing this process (SIGKILL)", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


@dataclass
class IndexForgetRequest:
    """What a client asks: classes to forget and/or items to delete, and how to unlearn."""

    classes: Sequence[str] = ()
    items: Sequence[str] = ()
    delete_class_items: bool = False
    method: str = "ppp"
    options: dict = field(default_factory=dict)
    seed: int = 0


@dataclass
class CheckedRequest:
    """A request resolved against a version: class indices, item rows, the method object."""

    request: IndexForgetRequest
    classes: list[str]
    class_indices: list[int]
    item_rows: np.ndarray
    method: object | None


def _deleted_by(index_dir: Path) -> dict[str, int]:
    """Item id -> the audit record that deleted it."""
    out: dict[str, int] = {}
    for record in audit_log(index_dir).records():
        for item in record.body.get("deleted_items") or []:
            out[str(item)] = record.seq
    return out


def check_request(
    version: IndexVersion, request: IndexForgetRequest, index_dir: Path | None = None
) -> CheckedRequest:
    """Every input checked before any work: classes, item ids, method and options, seed."""
    classes = [c.strip() for c in request.classes if c.strip()]
    items = [str(i).strip() for i in request.items if str(i).strip()]
    if not classes and not items:
        raise CrossforgetError(
            "a forget request needs --classes CLASS... and/or --items FILE (one item id a line)"
        )
    if request.delete_class_items and not classes:
        raise CrossforgetError("--delete-class-items deletes the items of --classes; name the classes")
    if request.options and not classes:
        raise CrossforgetError(
            "method options apply to class requests; an items-only request changes no model (add --classes)"
        )
    if isinstance(request.seed, bool) or not isinstance(request.seed, int):
        raise CrossforgetError(f"the seed must be an integer, got {request.seed!r}")
    indices = ForgetRequest(classes).indices(version.class_names) if classes else []
    classes = [version.class_names[i] for i in indices]
    position = version.position()
    unknown = [i for i in dict.fromkeys(items) if i not in position]
    if unknown:
        deleted = _deleted_by(index_dir) if index_dir is not None else {}
        first = unknown[0]
        why = (
            f"it was deleted by audit record #{deleted[first]}"
            if first in deleted
            else "it is no item of this index (query items of the split are not indexed)"
        )
        sample = ", ".join(map(str, version.item_ids[:5]))
        raise CrossforgetError(
            f"unknown item id {first!r} ({len(unknown)} unknown in all): {why}; the index holds "
            f"{len(position)} items with ids such as {sample}, ... "
            "(`crossforget index info INDEX --items` lists them)"
        )
    rows = np.asarray(sorted({position[i] for i in items}), dtype=np.int64)
    method = create_method(request.method, **dict(request.options)) if classes else None
    return CheckedRequest(request, classes, indices, rows, method)


def remaining_split(
    split: RetrievalSplit, present: np.ndarray, labels: np.ndarray, forgotten: Sequence[int]
) -> RetrievalSplit:
    """The split of what remains: deleted items and training items of forgotten classes left out."""
    excluded = np.setdiff1d(split.database, present)
    if forgotten:
        excluded = np.union1d(excluded, split.train[carries_any(labels[split.train], forgotten)])
    return RetrievalSplit(
        query=split.query,
        train=np.setdiff1d(split.train, excluded),
        database=np.setdiff1d(split.database, excluded),
        seed=split.seed,
    )


def json_safe(value: object) -> object:
    """Numbers, lists and dicts only; NaN/Inf -> None (the audit log stores strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist"):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def _diagnostics(diagnostics: dict) -> dict:
    """What the audit keeps of a method's diagnostics: the guard's outcome, neighbours, sample sizes."""
    keep = {}
    guard = diagnostics.get("guard")
    if isinstance(guard, dict):
        keep["guard"] = {
            k: guard.get(k)
            for k in ("alpha", "alphas", "start_alpha", "acted_on", "met", "skipped")
            if k in guard
        }
        keep["guard"]["steps"] = len(guard.get("steps", []))
    for key in ("neighbours", "samples", "gamma"):
        if key in diagnostics:
            keep[key] = diagnostics[key]
    return json_safe(keep)


def _deleted_rows(version: IndexVersion, checked: CheckedRequest) -> np.ndarray:
    """Which rows of ``version`` leave the item set: the listed items and, on request, every item
    carrying one of the request's classes."""
    delete = np.zeros(version.ids.size, dtype=bool)
    delete[checked.item_rows] = True
    if checked.request.delete_class_items:
        delete |= carries_any(version.labels, checked.class_indices)
    return delete


def _verification(
    version: IndexVersion,
    saved: object,
    view: RetrievalSplit,
    labels: np.ndarray,
    checked: CheckedRequest,
    forgotten: list[int],
    codes: dict[str, dict[str, np.ndarray]],
) -> dict | None:
    """Held-out mAP and MIA of the codes ``before`` and ``after`` (None for an items-only request)."""
    if not checked.class_indices:
        return None
    sample = verify.verification_sample(view, labels, checked.class_indices, forgotten, checked.request.seed)
    verification: dict = {"sample": sample.describe()}
    for when, by_modality in codes.items():
        verification[when] = verify.scores(
            sample,
            version.ids,
            by_modality,
            saved.bits,
            labels,
            saved.loss.proxies,
            checked.class_indices,
            forgotten,
        )
    return verification


def _new_content(
    version: IndexVersion, new: object, keep: np.ndarray, codes: dict[str, np.ndarray], forgotten: list[int]
) -> VersionContent:
    """The next version: the kept items with their new codes, the new model (or the serving one's
    folder when no model changed)."""
    return VersionContent(
        model=version.folder / "model" if new is version.model else new,
        ids=version.ids[keep],
        item_ids=version.item_ids[keep],
        labels=version.labels[keep],
        captions=version.captions[keep],
        codes={m: c[keep] for m, c in codes.items()},
        bits=version.model.bits,
        ivf=version.meta.get("ivf"),
        info={
            "parent": version.name,
            "class_names": version.class_names,
            "forgotten_classes": [version.class_names[i] for i in forgotten],
        },
    )


def _request_record(checked: CheckedRequest) -> dict:
    """The request as the audit keeps it (a fresh id, the method's resolved options)."""
    request, method = checked.request, checked.method
    return {
        "id": uuid.uuid4().hex,
        "classes": checked.classes,
        "items": [str(i) for i in request.items],
        "delete_class_items": bool(request.delete_class_items),
        "method": method.name if method is not None else None,
        "options": dataclasses.asdict(method.options) if method is not None else None,
        "seed": request.seed,
    }


def forget(
    index_dir: str | Path,
    request: IndexForgetRequest,
    hook: Hook | None = None,
    lock: WriterLock | None = None,
    device: object = None,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run one request to its commit; returns the committed audit record. ``lock``: one the caller
    already holds (released here); ``hook(stage)``: called as each stage starts (fault injection).
    Over 60 lines: the stages run in order under one writer lock and share the timings they record."""
    index_dir = Path(index_dir)
    hook = hook or fault_hook_from_env()
    log = log or (lambda text: print(text, file=sys.stderr, flush=True))
    with writer_lock(index_dir, f"a forget request ({', '.join(request.classes) or 'items'})", held=lock):
        started, t_start = utc_now(), time.perf_counter()
        current = open_index(index_dir, device=device)
        remove_other_versions(index_dir, keep=current.name)
        checked = check_request(current, request, index_dir)
        saved = current.model
        loaded = load_data(saved.dataset_spec, device=device)
        loaded.check(saved.config, current.folder / "model")
        labels = loaded.data.labels
        earlier = [current.class_names.index(c) for c in current.meta.get("forgotten_classes", [])]
        forgotten = sorted(set(earlier) | set(checked.class_indices))
        view = remaining_split(loaded.split, current.ids, labels, earlier)
        timings: dict[str, float] = {}

        def stage(name: str) -> float:
            hook(name)
            return time.perf_counter()

        narrowed = dataclasses.replace(loaded, split=view)
        t = stage("unlearn")
        new, diagnostics = saved, {}
        if checked.method is not None:
            new, result = run_method(
                checked.method, saved, narrowed, ForgetRequest(checked.classes), request.seed
            )
            diagnostics = _diagnostics(result.diagnostics)
            seconds = time.perf_counter() - t
            log(f"unlearned {', '.join(checked.classes)} with {checked.method.name} in {seconds:.1f} s")
        timings["unlearn"] = time.perf_counter() - t

        t = stage("delete")
        delete = _deleted_rows(current, checked)
        keep = ~delete
        timings["delete"] = time.perf_counter() - t

        t = stage("encode")
        before = {m: current.codes(m) for m in ("image", "text")}
        after = before if new is saved else encode_items(new.model, store_for(new, narrowed), current.ids)
        timings["encode"] = time.perf_counter() - t
        log(f"re-encoded {current.ids.size} items in {timings['encode']:.1f} s")

        t = stage("verify")
        codes = {"before": before, "after": after}
        verification = _verification(current, saved, view, labels, checked, forgotten, codes)
        timings["verify"] = time.perf_counter() - t

        t = stage("write")
        name, digest = write_version(
            index_dir, current.seq + 1, _new_content(current, new, keep, after, forgotten), hook
        )
        timings["write"] = time.perf_counter() - t
        timings["total_before_commit"] = time.perf_counter() - t_start
        body = json_safe(
            {
                "request": _request_record(checked),
                "started": started,
                "forgotten_classes": [current.class_names[i] for i in forgotten],
                "deleted_items": [str(i) for i in current.item_ids[delete]],
                "deleted_count": int(delete.sum()),
                "items_before": int(current.ids.size),
                "items_after": int(keep.sum()),
                "model_before": current.model_sha256,
                "model_after": checkpoint_sha256(index_dir / "versions" / name / "model"),
                "index_before": {"version": current.name, "sha256": current.sha256},
                "index_after": {"version": name, "sha256": digest},
                "verification": verification,
                "method_diagnostics": diagnostics,
                "durations": timings,
                "encode_seconds_per_1000_items": 1000 * timings["encode"] / max(1, current.ids.size),
                "environment": environment_stamp(),
            }
        )
        json.dumps(body, allow_nan=False)  # strict JSON before the commit, never after
        record = audit_log(index_dir).append("forget", body, before_commit=lambda: hook("commit"))
        remove_other_versions(index_dir, keep=name, quiet=True)
    return record.to_dict()
