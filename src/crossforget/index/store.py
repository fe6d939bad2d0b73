"""The on-disk live index: versions of FAISS binary indexes, a manifest, the lock, the commit point.

Layout of an index folder (all JSON written atomically, every version folder complete before use):

    INDEX/manifest.json        what the index is: format, dataset spec, bits, classes, build options
    INDEX/audit.sqlite         the audit log (WAL); its last record names the serving version
    INDEX/lock                 the writers' lock file (flock), holding the pid of the current writer
    INDEX/versions/v000003/    one version: version.json, model/ (the checkpoint that encoded it),
                               image.faiss, text.faiss (exact), optional image.ivf.faiss, text.ivf.faiss,
                               items.npz (dataset indices, item ids, labels, first captions)

A version is written under a temporary name, flushed to disk and renamed into place; it serves only
once an audit record naming it (with the SHA-256 of its version.json) is committed, in one SQLite
transaction: that commit is the atomic swap. A crash before it leaves the previous version serving
and intact; what the crashed writer left is removed by the next writer. After a commit the older
versions are deleted: a forget request must not leave the deleted items or the old model on disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crossforget.core.digest import file_sha256
from crossforget.core.errors import CrossforgetError
from crossforget.core.io import CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS, atomic_write_json
from crossforget.index.audit import AuditLog, utc_now

FORMAT = "crossforget-index/1"
VERSION_FORMAT = "crossforget-index-version/1"
MANIFEST, AUDIT, LOCK, VERSIONS = "manifest.json", "audit.sqlite", "lock", "versions"
VERSION_FILE, MODEL_DIR, ITEMS = "version.json", "model", "items.npz"
MODALITIES = ("image", "text")
Hook = Callable[[str], None]


def _no_hook(stage: str) -> None:
    return None


def version_name(seq: int) -> str:
    return f"v{seq:06d}"


def checkpoint_sha256(folder: str | Path) -> str:
    """The hash of a checkpoint: its config and weights files, byte for byte."""
    folder = Path(folder)
    parts = []
    for name in (CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS):
        path = folder / name
        if not path.is_file():
            raise CrossforgetError(f"{path} is missing; is {folder} a crossforget checkpoint (from `train`)?")
        parts.append(f"{name}:{file_sha256(path)}\n")
    return hashlib.sha256("".join(parts).encode()).hexdigest()


def faiss_bytes(index: object) -> bytes:
    import faiss

    return faiss.serialize_index_binary(index).tobytes()


def read_faiss(path: Path) -> object:
    import faiss

    try:
        return faiss.deserialize_index_binary(np.frombuffer(path.read_bytes(), dtype=np.uint8))
    except (RuntimeError, OSError) as exc:
        reason = str(exc).strip().splitlines()[-1][-120:] if str(exc).strip() else type(exc).__name__
        raise CrossforgetError(f"{path} cannot be read as a FAISS index ({reason}); {_REBUILD}") from None


_REBUILD = "the index is damaged: rebuild it with `crossforget index build`"


def flat_index(codes: np.ndarray, ids: np.ndarray, bits: int) -> object:
    """Exact Hamming search with stable external ids (the dataset indices)."""
    import faiss

    index = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(bits))
    index.add_with_ids(np.ascontiguousarray(codes, dtype=np.uint8), np.asarray(ids, dtype=np.int64))
    return index


def ivf_index(
    codes: np.ndarray, ids: np.ndarray, bits: int, nlist: int, nprobe: int, seed: int = 0
) -> object:
    """Inverted lists over Hamming k-means centroids: approximate, for large databases."""
    import faiss

    if codes.shape[0] < nlist:
        raise CrossforgetError(
            f"--ivf {nlist} needs at least {nlist} database items to train its lists, the index has "
            f"{codes.shape[0]}; choose a smaller --ivf (about sqrt(items)) or leave it out"
        )
    quantizer = faiss.IndexBinaryFlat(bits)
    index = faiss.IndexBinaryIVF(quantizer, bits, nlist)
    index.own_fields = True
    quantizer.this.disown()  # the IVF index frees it
    index.cp.seed = seed
    data = np.ascontiguousarray(codes, dtype=np.uint8)
    index.train(data)
    index.add_with_ids(data, np.asarray(ids, dtype=np.int64))
    index.nprobe = nprobe
    return index


def stored_codes(index: object, ids: np.ndarray) -> np.ndarray:
    """The codes an ``IndexBinaryIDMap2(IndexBinaryFlat)`` holds, checked to be in ``ids`` order."""
    import faiss

    inner = faiss.downcast_IndexBinary(index.index)
    codes = faiss.vector_to_array(inner.xb).reshape(index.ntotal, index.code_size)
    if not np.array_equal(faiss.vector_to_array(index.id_map), np.asarray(ids, dtype=np.int64)):
        raise CrossforgetError(f"the FAISS ids of the index differ from its items file; {_REBUILD}")
    return codes


@dataclass
class VersionContent:
    """What one version holds, ready to be written: the model, the items and their codes."""

    model: object  # a checkpoint folder to copy (Path) or a HashingCheckpoint to save
    ids: np.ndarray  # (N,) int64 dataset indices, ascending
    item_ids: np.ndarray  # (N,) str: stable item names (data.fingerprint.item_ids)
    labels: np.ndarray  # (N, C) uint8 multi-hot
    captions: np.ndarray  # (N,) str: the first caption of each item
    codes: dict[str, np.ndarray]  # modality -> (N, bits/8) uint8 packed sign bits
    bits: int
    ivf: dict | None = None  # {"nlist", "nprobe", ...} to also store IVF indexes
    info: dict = field(default_factory=dict)  # recorded in version.json (parent, forgotten classes...)


@dataclass
class IndexVersion:
    """One version loaded in memory: everything a search needs, independent of the files afterwards."""

    folder: Path
    name: str
    sha256: str
    meta: dict
    model: object  # HashingCheckpoint
    flat: dict[str, object]
    ivf: dict[str, object]
    ids: np.ndarray
    item_ids: np.ndarray
    labels: np.ndarray
    captions: np.ndarray
    seq: int = -1

    @property
    def model_sha256(self) -> str:
        return str(self.meta["model_sha256"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    def position(self) -> dict[str, int]:
        """Item id -> row."""
        return {str(item): row for row, item in enumerate(self.item_ids)}

    def codes(self, modality: str) -> np.ndarray:
        """(N, bits/8) packed codes of one modality, rows in ``ids`` order (as they were added)."""
        return stored_codes(self.flat[modality], self.ids)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, data: bytes) -> str:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


def _items_bytes(content: VersionContent) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        ids=np.asarray(content.ids, dtype=np.int64),
        item_ids=np.asarray(content.item_ids, dtype=np.str_),
        labels=np.packbits(np.asarray(content.labels, dtype=bool), axis=1),
        num_classes=np.asarray(content.labels.shape[1]),
        captions=np.asarray(content.captions, dtype=np.str_),
    )
    return buffer.getvalue()


def _write_model(model_dir: Path, model: object) -> dict[str, str]:
    """The model files of a version (copied from a checkpoint folder, or saved from a new model);
    their sha256 by path relative to the version folder."""
    # torch only here, where a new model is saved: `crossforget audit` reads the store without it
    from crossforget.tasks.hashing.checkpoint import save_hashing_checkpoint

    files: dict[str, str] = {}
    if isinstance(model, str | Path):
        model_dir.mkdir()
        for part in (CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS):
            files[f"{MODEL_DIR}/{part}"] = _write(model_dir / part, (Path(model) / part).read_bytes())
    else:
        save_hashing_checkpoint(model_dir, model)
        for part in (CHECKPOINT_CONFIG, CHECKPOINT_WEIGHTS):
            files[f"{MODEL_DIR}/{part}"] = file_sha256(model_dir / part)
    return files


def write_version(
    index_dir: Path, seq: int, content: VersionContent, hook: Hook = _no_hook
) -> tuple[str, str]:
    """Write version ``seq`` completely under a temporary name, then rename it into place.

    Returns (name, sha256 of its version.json). It does not serve until the audit record naming it is
    committed. ``hook("write")`` runs half-way (after the FAISS files, before version.json).
    """
    versions = index_dir / VERSIONS
    versions.mkdir(parents=True, exist_ok=True)
    name = version_name(seq)
    final = versions / name
    tmp = Path(tempfile.mkdtemp(dir=versions, prefix=f".{name}.{os.getpid()}.", suffix=".tmp"))
    try:
        model_dir = tmp / MODEL_DIR
        files = _write_model(model_dir, content.model)
        for modality in MODALITIES:
            codes = content.codes[modality]
            files[f"{modality}.faiss"] = _write(
                tmp / f"{modality}.faiss", faiss_bytes(flat_index(codes, content.ids, content.bits))
            )
            if content.ivf:
                ivf = ivf_index(codes, content.ids, content.bits, content.ivf["nlist"], content.ivf["nprobe"])
                files[f"{modality}.ivf.faiss"] = _write(tmp / f"{modality}.ivf.faiss", faiss_bytes(ivf))
        files[ITEMS] = _write(tmp / ITEMS, _items_bytes(content))
        hook("write")
        meta = {
            "format": VERSION_FORMAT,
            "version": name,
            "seq": seq,
            "created": utc_now(),
            "bits": content.bits,
            "items": int(len(content.ids)),
            "model_sha256": checkpoint_sha256(model_dir),
            "files": files,
            "ivf": content.ivf,
            **content.info,
        }
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        digest = _write(tmp / VERSION_FILE, text.encode("utf-8"))
        _fsync_dir(tmp)
        if final.exists():  # an uncommitted leftover of a crashed writer (we hold the lock)
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(versions)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return name, digest


def read_json(path: Path, what: str) -> dict:
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CrossforgetError(
            f"{path} ({what}) is not readable JSON ({type(exc).__name__}); {_REBUILD}"
        ) from None
    if not isinstance(value, dict):
        raise CrossforgetError(
            f"{path} ({what}) holds a JSON {type(value).__name__}, not an object; {_REBUILD}"
        )
    return value


def read_manifest(index_dir: Path) -> dict:
    """The index manifest, checked; a folder that is not an index is a one-line error."""
    path = index_dir / MANIFEST
    if not path.is_file():
        hint = "" if index_dir.is_dir() else " (the folder does not exist)"
        raise CrossforgetError(
            f"{index_dir} is not a crossforget index{hint}: {MANIFEST} is missing; "
            "create one with `crossforget index build --checkpoint DIR --out INDEX`"
        )
    manifest = read_json(path, "the index manifest")
    if manifest.get("format") != FORMAT:
        raise CrossforgetError(
            f"{path} has format {manifest.get('format')!r}, expected {FORMAT!r}; {_REBUILD}"
        )
    for key, kind in (("bits", int), ("class_names", list), ("dataset", dict)):
        if not isinstance(manifest.get(key), kind):
            raise CrossforgetError(f"{path}: {key!r} is missing or not a {kind.__name__}; {_REBUILD}")
    return manifest


def write_manifest(index_dir: Path, manifest: dict) -> None:
    atomic_write_json(index_dir / MANIFEST, {"format": FORMAT, **manifest})


def audit_log(index_dir: Path) -> AuditLog:
    return AuditLog(index_dir / AUDIT)


def serving(index_dir: Path) -> tuple[int, str, str]:
    """(seq of the last audit record, serving version name, sha256 of its version.json)."""
    head = audit_log(index_dir).head()
    after = head.body.get("index_after") if head is not None else None
    if not isinstance(after, dict) or not isinstance(after.get("version"), str):
        raise CrossforgetError(f"{index_dir / AUDIT} names no serving version; {_REBUILD}")
    return head.seq, after["version"], str(after.get("sha256"))


def _load_items(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            items = {k: z[k] for k in ("ids", "item_ids", "labels", "num_classes", "captions")}
    except (OSError, ValueError, KeyError) as exc:
        raise CrossforgetError(f"{path} cannot be read ({type(exc).__name__}); {_REBUILD}") from None
    items["labels"] = np.unpackbits(items["labels"], axis=1, count=int(items["num_classes"]))
    return items


def load_version(folder: Path, expected_sha256: str | None, device: object = None) -> IndexVersion:
    """Load and verify one version: version.json against the audit record, every file against it."""
    from crossforget.tasks.hashing.checkpoint import load_hashing_checkpoint

    meta_path = folder / VERSION_FILE
    raw = meta_path.read_bytes()  # FileNotFoundError: the caller retries (the version was replaced)
    digest = hashlib.sha256(raw).hexdigest()
    if expected_sha256 is not None and digest != expected_sha256:
        raise CrossforgetError(
            f"{meta_path} does not match the audit log (sha256 {digest[:12]}..., the log says "
            f"{expected_sha256[:12]}...): it was changed after the commit; {_REBUILD}"
        )
    meta = read_json(meta_path, "the version manifest")
    files = meta.get("files")
    if meta.get("format") != VERSION_FORMAT or not isinstance(files, dict):
        raise CrossforgetError(f"{meta_path} is not a crossforget index version; {_REBUILD}")
    for name, sha in files.items():
        path = folder / name
        if not path.is_file():
            raise CrossforgetError(f"{path} is missing; {_REBUILD}")
        if file_sha256(path) != sha:
            raise CrossforgetError(f"{path} is corrupt (its sha256 differs from {VERSION_FILE}); {_REBUILD}")
    model = load_hashing_checkpoint(folder / MODEL_DIR, device)
    flat = {m: read_faiss(folder / f"{m}.faiss") for m in MODALITIES}
    ivf = {m: read_faiss(folder / f"{m}.ivf.faiss") for m in MODALITIES if f"{m}.ivf.faiss" in files}
    items = _load_items(folder / ITEMS)
    for m in MODALITIES:
        if flat[m].ntotal != len(items["ids"]):
            raise CrossforgetError(
                f"{folder / f'{m}.faiss'} holds {flat[m].ntotal} codes for {len(items['ids'])} "
                f"items; {_REBUILD}"
            )
    return IndexVersion(
        folder=folder,
        name=str(meta["version"]),
        sha256=digest,
        meta=meta,
        model=model,
        flat=flat,
        ivf=ivf,
        ids=items["ids"],
        item_ids=items["item_ids"],
        labels=items["labels"],
        captions=items["captions"],
        seq=int(meta.get("seq", -1)),
    )


def open_index(
    index_dir: str | Path, checkpoint: str | Path | None = None, device: object = None
) -> IndexVersion:
    """The serving version, verified; ``checkpoint``: a model the caller means to use with it (its hash
    must be the version's). A version replaced while being opened is re-read from the new head."""
    index_dir = Path(index_dir)
    read_manifest(index_dir)
    for attempt in range(5):
        seq, name, sha = serving(index_dir)
        try:
            version = load_version(index_dir / VERSIONS / name, sha, device)
        except (FileNotFoundError, CrossforgetError) as exc:
            # A writer committed a newer version and removed this one while it was being read: retry.
            replaced = serving(index_dir)[0] != seq
            if attempt == 4 or not (replaced or isinstance(exc, FileNotFoundError)):
                if isinstance(exc, CrossforgetError):
                    raise
                raise CrossforgetError(f"{index_dir / VERSIONS / name} is missing; {_REBUILD}") from None
            time.sleep(0.05)
            continue
        version.seq = seq
        break
    if checkpoint is not None:
        given = checkpoint_sha256(checkpoint)
        if given != version.model_sha256:
            raise CrossforgetError(
                f"{index_dir} serves codes of the model with sha256 {version.model_sha256[:12]}..., but "
                f"{checkpoint} has sha256 {given[:12]}...: its codes would not be comparable. Leave out "
                "--checkpoint (the index carries its own model) or build an index from that checkpoint"
            )
    return version


class IndexBusy(CrossforgetError):
    """Another writer holds the index's lock."""


@dataclass
class WriterLock:
    """An exclusive flock on INDEX/lock; released on close or when the holder dies (even SIGKILL)."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def acquire_lock(index_dir: Path, what: str) -> WriterLock:
    """Take the writers' lock now or fail with who holds it (requests are refused, not queued)."""
    path = Path(index_dir) / LOCK
    read_manifest(Path(index_dir))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CrossforgetError(
            f"cannot open the lock file {path} ({exc.strerror}); forget requests need a writable index"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
        os.close(fd)
        raise IndexBusy(
            f"index {index_dir} is busy: {holder}; wait until it finishes (`crossforget audit list` "
            "shows it once committed), then send the request again"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{what} by pid {os.getpid()} since {utc_now()}".encode(), 0)
    return WriterLock(path, fd)


@contextlib.contextmanager
def writer_lock(index_dir: Path, what: str, held: WriterLock | None = None) -> Iterator[WriterLock]:
    """The lock for the block; ``held``: one the caller took already (released at the end too)."""
    lock = held or acquire_lock(index_dir, what)
    try:
        yield lock
    finally:
        lock.release()


def remove_other_versions(index_dir: Path, keep: str, quiet: bool = False) -> list[str]:
    """Delete every version folder but ``keep`` (old versions, crashed writers' leftovers); lock held."""
    removed = []
    versions = Path(index_dir) / VERSIONS
    for entry in sorted(versions.iterdir()) if versions.is_dir() else []:
        if entry.name == keep:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
        if not quiet and entry.name.startswith("."):
            print(f"removed {entry}, left by a forget request that did not finish", file=sys.stderr)
    return removed
