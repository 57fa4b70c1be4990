"""One checkpoint file -> its tensors, their canonical digest and their sketches.

Runs on the host, so the file is treated as hostile: its size is checked first, then it is
read with ``torch.load(weights_only=True, map_location="cpu")`` (no code runs, only tensors
and plain containers come back) or as safetensors; nothing the student wrote is imported.
Anything that goes wrong is ``CheckpointUnreadable`` with one sentence: the submission then
simply has no weights evidence for that checkpoint.

The digest is SHA-256 over the sorted key names, each tensor's dtype, shape and raw bytes
(contiguous, in key order), so a state_dict saved again, copied into another file or with
its storages laid out differently gives the same digest although the file bytes differ.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.similarity import sketch

MAX_TENSORS = 10_000  # a ResNet-50 has ~320; more is not a state_dict we grade
DATA_STATISTICS = ("running_mean", "running_var")  # batch norm buffers (see ``compared``)


class CheckpointUnreadable(Exception):
    """The checkpoint gives no weights evidence; ``message`` says why, in one sentence."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, eq=False)
class CheckpointEvidence:
    """What similarity needs of one checkpoint: small, and the same for any file layout.

    ``keys`` are the compared floating-point tensors (``compared``), sorted; row ``i`` of
    ``sketches`` is the sketch of ``keys[i]`` (see ``sketch``), ``sizes[i]`` its element count
    and ``norms[i]`` the exact norm of the centred tensor. ``arch`` identifies the architecture (every key and
    shape): only checkpoints of the same ``arch`` are compared tensor by tensor.
    """

    file: str
    digest: str
    arch: str
    keys: tuple[str, ...]
    sizes: np.ndarray  # (T,) int64
    norms: np.ndarray  # (T,) float64
    sketches: np.ndarray  # (T, sketch.DIM) float32


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of a regular file (never through a link) of at most ``max_bytes``."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise CheckpointUnreadable(f"{path.name} is missing") from None
    except OSError as exc:
        raise CheckpointUnreadable(f"{path.name} cannot be opened ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointUnreadable(f"{path.name} is not a regular file")
        if info.st_size > max_bytes:
            raise CheckpointUnreadable(f"{path.name} is {info.st_size} bytes, over the {max_bytes} limit")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise CheckpointUnreadable(f"{path.name} grew over the {max_bytes} byte limit while read")
    return data


def load_tensors(data: bytes, name: str) -> dict[str, object]:
    """A state_dict (name -> torch.Tensor) from checkpoint bytes, by ``weights_only`` or safetensors."""
    import torch

    try:
        if name.endswith(".safetensors"):
            from safetensors.torch import load as load_safetensors

            loaded: object = load_safetensors(data)
        else:
            loaded = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # hostile bytes: any failure means "no evidence", never a crash
        raise CheckpointUnreadable(f"{name} does not load as a state_dict ({type(exc).__name__})") from None
    if not isinstance(loaded, Mapping):
        raise CheckpointUnreadable(f"{name} holds a {type(loaded).__name__}, not a state_dict")
    if len(loaded) > MAX_TENSORS:
        raise CheckpointUnreadable(f"{name} holds {len(loaded)} entries, more than {MAX_TENSORS}")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()):
        raise CheckpointUnreadable(f"{name} is not a plain state_dict (name -> tensor)")
    return dict(loaded)


def tensor_bytes(tensor: object) -> bytes:
    """The raw bytes of a tensor's elements, contiguous, in the machine's (little-endian) order."""
    import torch

    assert isinstance(tensor, torch.Tensor)
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def digest_of(tensors: Mapping[str, object]) -> str:
    """SHA-256 over sorted key names, each tensor's dtype, shape and raw bytes."""
    import torch

    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key]
        assert isinstance(tensor, torch.Tensor)
        header = json.dumps([key, str(tensor.dtype).removeprefix("torch."), list(tensor.shape)]).encode()
        data = tensor_bytes(tensor)
        digest.update(len(header).to_bytes(8, "little") + header)
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def arch_of(tensors: Mapping[str, object]) -> str:
    """A short id of the architecture: every key and shape (not dtype: a float16 copy is the same net)."""
    layout = [[key, list(getattr(tensors[key], "shape", ()))] for key in sorted(tensors)]
    return hashlib.sha256(json.dumps(layout).encode()).hexdigest()[:16]


def compared(key: str) -> bool:
    """Whether a tensor counts in weight similarity: not batch norm's running statistics.

    Those are statistics of the training data, not learned: two students who train on the
    same data get much the same ones (and integer counters are not weights at all). They
    still count in the digest.
    """
    return not key.endswith(DATA_STATISTICS)


def float_arrays(tensors: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The compared floating-point tensors as flat float64 NumPy arrays, sorted by key."""
    import torch

    arrays: dict[str, np.ndarray] = {}
    for key in sorted(tensors):
        tensor = tensors[key]
        assert isinstance(tensor, torch.Tensor)
        if tensor.is_floating_point() and tensor.numel() > 0 and compared(key):
            arrays[key] = tensor.detach().cpu().to(torch.float64).reshape(-1).numpy()
    return arrays


def evidence_of(tensors: Mapping[str, object], file: str) -> CheckpointEvidence:
    """Digest, architecture and per-tensor sketches of a loaded state_dict."""
    arrays = float_arrays(tensors)
    keys = tuple(arrays)
    sketches = np.zeros((len(keys), sketch.DIM), dtype=np.float32)
    norms = np.zeros(len(keys), dtype=np.float64)
    for row, key in enumerate(keys):
        flat = sketch.centred(arrays[key])
        sketches[row] = sketch.project(key, flat)
        norms[row] = float(np.linalg.norm(flat))
    return CheckpointEvidence(
        file=file,
        digest=digest_of(tensors),
        arch=arch_of(tensors),
        keys=keys,
        sizes=np.array([arrays[k].size for k in keys], dtype=np.int64),
        norms=norms,
        sketches=sketches,
    )


def read_checkpoint(path: Path, *, max_bytes: int) -> CheckpointEvidence:
    """The evidence of one checkpoint file; ``CheckpointUnreadable`` when it gives none."""
    return evidence_of(load_tensors(read_bounded(path, max_bytes), path.name), path.name)
