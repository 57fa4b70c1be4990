"""The manifest of a built hidden test set: what each file holds, and checks that it still does.

Layout of a built set (only ``inputs/`` is ever shown to student code)::

    ROOT/manifest.json
    ROOT/inputs/<dataset>/<split>.npy    uint8 (N, C, H, W) pixels, or float32 once normalised
    ROOT/labels/<dataset>/<split>.npy    int64 (N,)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from grader.datasets.provenance import Provenance
from grader.errors import GraderFault

# 2: each data set records its ``provenance`` (format 1 had a ``synthetic`` flag; still read).
# 3: each data set records the ``dtype`` of its inputs (before: always uint8).
FORMAT = 3
READABLE_FORMATS = (1, 2, 3)
# uint8: pixels, the model input is the array / 255 (ToTensor); float32: the model input as is.
INPUT_DTYPES = ("uint8", "float32")
MANIFEST_NAME = "manifest.json"
INPUTS = "inputs"
LABELS = "labels"
NOT_BUILT = "The hidden test data is not built; run `grader build-tests` first."
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SplitInfo:
    """One split of a dataset; ``inputs`` and ``labels`` are absolute paths of .npy files."""

    name: str
    count: int
    inputs: Path
    labels: Path
    class_counts: tuple[int, ...]


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its classes, input shape (C, H, W), preprocessing and splits.

    ``note`` tells the instructor what its ``provenance`` means for its results ("" if nothing).
    """

    name: str
    title: str
    provenance: Provenance
    note: str
    source: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]
    preprocessing: str
    splits: Mapping[str, SplitInfo]
    dtype: str = "uint8"  # of the inputs: one of INPUT_DTYPES


@dataclass(frozen=True)
class Manifest:
    """A built hidden test set: its datasets and the SHA-256 of every file (by relative path)."""

    root: Path
    datasets: Mapping[str, DatasetInfo]
    files: Mapping[str, str]
    built_at: str

    @property
    def inputs_dir(self) -> Path:
        """The folder that alone is mounted (read-only) into the sandbox."""
        return self.root / INPUTS

    def dataset(self, name: str) -> DatasetInfo:
        """The dataset called ``name``; GraderFault if this build has none."""
        if name not in self.datasets:
            raise GraderFault(
                f"The hidden test data has no dataset '{name}'; run `grader build-tests`.",
                detail=f"{self.root / MANIFEST_NAME} lists {', '.join(self.datasets) or 'nothing'}",
            )
        return self.datasets[name]

    def input_relpath(self, split: SplitInfo) -> str:
        """Where ``split``'s inputs lie relative to :attr:`inputs_dir` (e.g. in the sandbox)."""
        return split.inputs.relative_to(self.inputs_dir).as_posix()


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as f:
        while size := f.readinto(buffer):
            digest.update(view[:size])
    return digest.hexdigest()


def load_labels(split: SplitInfo) -> np.ndarray:
    """The labels of ``split`` as an int64 array (N,)."""
    return np.load(split.labels, allow_pickle=False)


# --------------------------------------------------------------------------- writing


def manifest_dict(
    root: Path, datasets: Mapping[str, DatasetInfo], files: Mapping[str, str], built_at: str
) -> dict[str, Any]:
    """The JSON form of a manifest; paths become POSIX paths relative to ``root``."""

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    return {
        "format": FORMAT,
        "built_at": built_at,
        "datasets": {
            name: {
                "title": d.title,
                "provenance": str(d.provenance),
                "note": d.note,
                "source": d.source,
                "classes": list(d.classes),
                "input_shape": list(d.input_shape),
                "preprocessing": d.preprocessing,
                "dtype": d.dtype,
                "splits": {
                    s.name: {
                        "count": s.count,
                        "inputs": rel(s.inputs),
                        "labels": rel(s.labels),
                        "class_counts": list(s.class_counts),
                    }
                    for s in d.splits.values()
                },
            }
            for name, d in datasets.items()
        },
        "files": dict(sorted(files.items())),
    }


def write_manifest(
    root: Path, datasets: Mapping[str, DatasetInfo], files: Mapping[str, str], built_at: str
) -> Path:
    """Write ``root/manifest.json`` atomically (a temporary file, fsynced, then renamed)."""
    text = json.dumps(manifest_dict(root, datasets, files, built_at), indent=2) + "\n"
    path = root / MANIFEST_NAME
    tmp = root / f".{MANIFEST_NAME}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- loading


def _damaged(root: Path, what: str, problem: str) -> GraderFault:
    return GraderFault(
        f"The hidden test data is damaged ({what}: {problem}); run `grader build-tests`.",
        detail=f"in {root}",
    )


def _get(table: Any, key: str, kind: type, root: Path, where: str) -> Any:
    if not isinstance(table, dict) or key not in table:
        raise _damaged(root, MANIFEST_NAME, f"{where} has no '{key}'")
    value = table[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _damaged(root, MANIFEST_NAME, f"{where}.{key} must be {kind.__name__}")
    return value


def _relpath(text: str, top: str, root: Path, where: str) -> Path:
    rel = PurePosixPath(text)
    if rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2 or rel.parts[0] != top:
        raise _damaged(root, MANIFEST_NAME, f"{where} = {text!r} must be a path under {top}/")
    return root.joinpath(*rel.parts)


def _split(name: str, raw: Any, root: Path, where: str) -> SplitInfo:
    counts = _get(raw, "class_counts", list, root, where)
    if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
        raise _damaged(root, MANIFEST_NAME, f"{where}.class_counts must be whole numbers")
    return SplitInfo(
        name=name,
        count=_get(raw, "count", int, root, where),
        inputs=_relpath(_get(raw, "inputs", str, root, where), INPUTS, root, f"{where}.inputs"),
        labels=_relpath(_get(raw, "labels", str, root, where), LABELS, root, f"{where}.labels"),
        class_counts=tuple(counts),
    )


def _provenance(name: str, raw: Any, root: Path, where: str, fmt: int) -> Provenance:
    """The recorded provenance; a format-1 manifest has only ``synthetic``, and its
    FashionMNIST was always built from IDX files with the public set as the default."""
    if fmt == 1:
        if _get(raw, "synthetic", bool, root, where):
            return Provenance.SYNTHETIC
        return Provenance.PUBLIC if name == "fashion_mnist" else Provenance.PRIVATE
    value = _get(raw, "provenance", str, root, where)
    try:
        return Provenance(value)
    except ValueError:
        known = ", ".join(p.value for p in Provenance)
        raise _damaged(root, MANIFEST_NAME, f"{where}.provenance must be one of {known}") from None


def _dataset(name: str, raw: Any, root: Path, fmt: int) -> DatasetInfo:
    where = f"datasets.{name}"
    splits = _get(raw, "splits", dict, root, where)
    classes = _get(raw, "classes", list, root, where)
    shape = _get(raw, "input_shape", list, root, where)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise _damaged(root, MANIFEST_NAME, f"{where}.classes must be a list of names")
    if not shape or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise _damaged(root, MANIFEST_NAME, f"{where}.input_shape must be positive whole numbers")
    dtype = _get(raw, "dtype", str, root, where) if fmt >= 3 else "uint8"
    if dtype not in INPUT_DTYPES:
        raise _damaged(root, MANIFEST_NAME, f"{where}.dtype must be one of {', '.join(INPUT_DTYPES)}")
    return DatasetInfo(
        name=name,
        title=_get(raw, "title", str, root, where),
        provenance=_provenance(name, raw, root, where, fmt),
        note=_get(raw, "note", str, root, where),
        source=_get(raw, "source", str, root, where),
        classes=tuple(classes),
        input_shape=tuple(shape),
        preprocessing=_get(raw, "preprocessing", str, root, where),
        splits={s: _split(s, v, root, f"{where}.splits.{s}") for s, v in splits.items()},
        dtype=dtype,
    )


def load_manifest(root: Path, *, verify: bool = True) -> Manifest:
    """Read ``root/manifest.json``; ``verify`` checks every file against it (else GraderFault)."""
    root = Path(root)
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise GraderFault(NOT_BUILT, detail=f"{path} does not exist")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(root, MANIFEST_NAME, f"unreadable ({exc})") from exc
    if not isinstance(raw, dict) or raw.get("format") not in READABLE_FORMATS:
        raise _damaged(root, MANIFEST_NAME, f"not a format-{FORMAT} manifest")
    files = _get(raw, "files", dict, root, "manifest")
    if not all(isinstance(v, str) for v in files.values()):
        raise _damaged(root, MANIFEST_NAME, "files must map paths to SHA-256 digests")
    for rel in files:
        top = PurePosixPath(rel).parts[0] if rel else ""
        _relpath(rel, top if top in (INPUTS, LABELS) else INPUTS, root, f"files[{rel!r}]")
    manifest = Manifest(
        root=root,
        datasets={
            n: _dataset(n, d, root, raw["format"])
            for n, d in _get(raw, "datasets", dict, root, "manifest").items()
        },
        files=dict(files),
        built_at=_get(raw, "built_at", str, root, "manifest"),
    )
    if verify:
        verify_manifest(manifest)
    return manifest


# --------------------------------------------------------------------------- verification


def verify_manifest(manifest: Manifest) -> None:
    """Check hashes, shapes, dtypes, counts and that ``inputs/`` holds nothing unlisted."""
    root = manifest.root
    referenced: set[str] = set()
    for dataset in manifest.datasets.values():
        for split in dataset.splits.values():
            for path in (split.inputs, split.labels):
                rel = path.relative_to(root).as_posix()
                if rel not in manifest.files:
                    raise _damaged(root, rel, "not listed among the manifest's files")
                referenced.add(rel)
    for rel in manifest.files:
        if rel not in referenced:
            raise _damaged(root, rel, "listed in the manifest but part of no split")
    for rel, digest in manifest.files.items():
        path = root / rel
        if path.is_symlink() or not path.is_file():
            raise _damaged(root, rel, "missing" if not path.exists() else "not a regular file")
        if sha256_file(path) != digest:
            raise _damaged(root, rel, "its SHA-256 does not match the manifest")
    for dataset in manifest.datasets.values():
        for split in dataset.splits.values():
            _check_split(root, dataset, split)
    _check_inputs_folder(manifest)


def _load_npy(root: Path, path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise _damaged(
            root, path.relative_to(root).as_posix(), f"not a plain .npy array ({exc})"
        ) from exc


def _check_split(root: Path, dataset: DatasetInfo, split: SplitInfo) -> None:
    inputs = _load_npy(root, split.inputs)
    labels = _load_npy(root, split.labels)
    want = (split.count, *dataset.input_shape)
    rel_in, rel_lab = (p.relative_to(root).as_posix() for p in (split.inputs, split.labels))
    if inputs.dtype != np.dtype(dataset.dtype) or inputs.shape != want:
        raise _damaged(
            root, rel_in, f"holds {inputs.dtype} {inputs.shape}, expected {dataset.dtype} {want}"
        )
    if labels.dtype != np.int64 or labels.shape != (split.count,):
        raise _damaged(
            root, rel_lab, f"holds {labels.dtype} {labels.shape}, expected int64 ({split.count},)"
        )
    classes = len(dataset.classes)
    if split.count and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise _damaged(root, rel_lab, f"has labels outside 0..{classes - 1}")
    counts = tuple(int(c) for c in np.bincount(np.asarray(labels), minlength=classes))
    if counts != split.class_counts:
        raise _damaged(
            root, rel_lab, f"class counts {counts} differ from the manifest's {split.class_counts}"
        )


def _check_inputs_folder(manifest: Manifest) -> None:
    root, top = manifest.root, manifest.inputs_dir
    if top.is_symlink() or not top.is_dir():
        raise _damaged(root, INPUTS, "missing or not a folder")
    for here, dirs, files in os.walk(top):
        for name in (*dirs, *files):
            path = Path(here) / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise _damaged(root, rel, "unexpected symbolic link under inputs/")
            if name in files and rel not in manifest.files:
                raise _damaged(
                    root, rel, "unexpected file under inputs/ (only listed inputs may be there)"
                )
