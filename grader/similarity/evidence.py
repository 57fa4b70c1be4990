"""One submission -> its similarity evidence: checkpoints, code fingerprints, predictions.

The caller names what to read (``Wanted``): which source files, and which checkpoint
"slots" with the file names each may have (``model.pt`` or ``model.safetensors``). Nothing
here knows parts or splits: predictions come in as arrays under the caller's keys
(``"<part>/<split>"``), code and checkpoints under their file names.

Evidence is small (for a MyNet-sized checkpoint and two source files, about 30 KB) and
serialises to bytes (``to_bytes``: an ``.npz`` with a JSON head, read back without pickle), so
any storage can keep it.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from grader.similarity import code, sketch
from grader.similarity.checkpoints import CheckpointEvidence, CheckpointUnreadable, read_checkpoint
from grader.similarity.packing import pack, unpack

log = logging.getLogger(__name__)

FORMAT = 1


@dataclass(frozen=True)
class Wanted:
    """What to read of a submission: source files, and checkpoint slots with their possible names."""

    code: tuple[str, ...]
    checkpoints: Mapping[str, tuple[str, ...]]
    max_checkpoint_bytes: int = 150 * 2**20


@dataclass(frozen=True, eq=False)
class Evidence:
    """Everything similarity compares of one submission; ``notes`` say what is missing and why."""

    checkpoints: Mapping[str, CheckpointEvidence] = field(default_factory=dict)  # by slot
    code: Mapping[str, code.CodeFingerprint] = field(default_factory=dict)  # by file name
    predictions: Mapping[str, np.ndarray] = field(default_factory=dict)  # by "group/split"
    notes: tuple[str, ...] = ()

    # ---- bytes

    def to_bytes(self) -> bytes:
        """The arrays and a JSON head describing the rest (``packing``), read back without pickle."""
        arrays: dict[str, np.ndarray] = {}
        checkpoints, sources, keys = [], [], []
        for i, (slot, ck) in enumerate(self.checkpoints.items()):
            checkpoints.append(
                {"slot": slot, "file": ck.file, "digest": ck.digest, "arch": ck.arch, "keys": list(ck.keys)}
            )
            arrays.update(
                {f"ck{i}_sizes": ck.sizes, f"ck{i}_norms": ck.norms, f"ck{i}_sketches": ck.sketches}
            )
        for i, (name, fp) in enumerate(self.code.items()):
            sources.append({"file": name, "text": fp.text, "filtered": fp.filtered})
            arrays.update(
                {
                    f"code{i}_hashes": fp.hashes,
                    f"code{i}_positions": fp.positions,
                    f"code{i}_offsets": fp.offsets,
                }
            )
        for i, (key, values) in enumerate(self.predictions.items()):
            keys.append(key)
            arrays[f"pred{i}"] = np.asarray(values)
        head = {
            "format": FORMAT,
            "sketch_dim": sketch.DIM,
            "notes": list(self.notes),
            "checkpoints": checkpoints,
            "code": sources,
            "predictions": keys,
        }
        return pack(head, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> Evidence:
        """Read ``to_bytes`` back; ValueError when it is not evidence of this format."""
        head, npz = unpack(data)
        if head.get("format") != FORMAT or head.get("sketch_dim") != sketch.DIM:
            raise ValueError("evidence of another format or sketch size; extract it again")
        try:
            return cls._from_parts(head, npz)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"damaged evidence ({type(exc).__name__}: {exc})") from None

    @classmethod
    def _from_parts(cls, head: dict, npz: dict[str, np.ndarray]) -> Evidence:
        checkpoints = {
            c["slot"]: CheckpointEvidence(
                file=c["file"],
                digest=c["digest"],
                arch=c["arch"],
                keys=tuple(c["keys"]),
                sizes=npz[f"ck{i}_sizes"],
                norms=npz[f"ck{i}_norms"],
                sketches=npz[f"ck{i}_sketches"],
            )
            for i, c in enumerate(head["checkpoints"])
        }
        fingerprints = {
            c["file"]: code.CodeFingerprint(
                file=c["file"],
                text=c["text"],
                filtered=c["filtered"],
                hashes=npz[f"code{i}_hashes"],
                positions=npz[f"code{i}_positions"],
                offsets=npz[f"code{i}_offsets"],
            )
            for i, c in enumerate(head["code"])
        }
        predictions = {key: npz[f"pred{i}"] for i, key in enumerate(head["predictions"])}
        return cls(checkpoints, fingerprints, predictions, tuple(head["notes"]))


def _read_text(path: Path) -> str | None:
    """A regular file's text (never through a link), at most ``code.MAX_CODE_BYTES``; None if absent."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read(code.MAX_CODE_BYTES + 1)
    if len(data) > code.MAX_CODE_BYTES:
        return None
    return data.decode("utf-8", errors="replace")


def extract(folder: Path, wanted: Wanted, *, predictions: Mapping[str, np.ndarray] | None = None) -> Evidence:
    """The evidence of one checked submission folder (files at its top level).

    Never imports or runs the student's code; a checkpoint that does not load is a note
    ("no weights evidence"), not an error.
    """
    notes: list[str] = []
    checkpoints: dict[str, CheckpointEvidence] = {}
    for slot, names in wanted.checkpoints.items():
        present = [name for name in names if (folder / name).is_file()]
        if not present:
            notes.append(f"{slot}: missing, no weights evidence")
            continue
        try:
            checkpoints[slot] = read_checkpoint(folder / present[0], max_bytes=wanted.max_checkpoint_bytes)
        except CheckpointUnreadable as exc:
            notes.append(f"{slot}: {exc.message}; no weights evidence")
            log.info("%s: %s", folder / present[0], exc.message)
    fingerprints: dict[str, code.CodeFingerprint] = {}
    for name in wanted.code:
        text = _read_text(folder / name)
        if text is None:
            notes.append(f"{name}: missing or over {code.MAX_CODE_BYTES} bytes, no code evidence")
            continue
        fingerprints[name] = code.fingerprint(name, text)
    kept = {k: compact(v) for k, v in (predictions or {}).items()}
    return Evidence(checkpoints, fingerprints, kept, tuple(notes))


def compact(values: np.ndarray) -> np.ndarray:
    """Class indices in the smallest integer type that holds them (10,000 answers: 10 KB, not 80)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iu" or not values.size:
        return values
    for dtype in (np.int8, np.int16, np.int32):
        if values.min() >= np.iinfo(dtype).min and values.max() <= np.iinfo(dtype).max:
            return values.astype(dtype)
    return values
