"""Build the student's models, load their checkpoints safely, and classify the hidden inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


class PartFailed(Exception):
    """A student-caused failure of one part, with the sentence the student reads."""


_OPENED: dict[str, np.ndarray] = {}


def open_inputs(path: Path) -> np.ndarray:
    """The memory-mapped hidden inputs at ``path``, opened once per process."""
    key = os.fspath(path)
    if key not in _OPENED:
        _OPENED[key] = np.load(path, mmap_mode="r", allow_pickle=False)
    return _OPENED[key]


def load_state_dict(path: Path, max_bytes: int) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` on the CPU after a size check."""
    import torch

    if not path.is_file():
        raise PartFailed(f"{path.name} is missing from the submission.")
    size = path.stat().st_size
    if size > max_bytes:
        raise PartFailed(
            f"{path.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB limit; "
            "save only the model's state_dict()."
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:  # pragma: no cover - the runner image ships safetensors
            raise PartFailed("safetensors checkpoints are not supported by this grader.") from exc
        try:
            return dict(load_file(str(path), device="cpu"))
        except Exception as exc:
            raise PartFailed(f"{path.name} is not a valid safetensors file ({exc}).") from exc
    try:
        state = torch.load(str(path), weights_only=True, map_location="cpu")
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text:
            raise PartFailed(
                f"{path.name} holds pickled Python objects, not just tensors; save it with "
                f"torch.save(model.state_dict(), '{path.name}')."
            ) from exc
        raise PartFailed(
            f"{path.name} is not a PyTorch checkpoint torch.load can read "
            f"({type(exc).__name__}); save it with torch.save(model.state_dict(), '{path.name}')."
        ) from exc
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise PartFailed(
            f"{path.name} is not a state_dict (a dict of tensors); save it with "
            f"torch.save(model.state_dict(), '{path.name}')."
        )
    return state


def _key_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:5])
    return shown + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def load_into(model: Any, state: dict[str, Any], checkpoint: str, class_name: str) -> None:
    """``load_state_dict(strict=True)`` with the mismatching keys named."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_key_list(unexpected)}")
    if shapes:
        problems.append(f"wrong shapes (checkpoint vs model) {_key_list(shapes)}")
    if problems:
        raise PartFailed(
            f"{checkpoint} does not match {class_name}(): {'; '.join(problems)}. "
            f"Save the state_dict of the same {class_name} class you submit."
        )
    model.load_state_dict(state, strict=True)


def classify_split(
    module: Any, model: Any, inputs: Path, out_file: Path, batch_size: int, name: str
) -> int:
    """Run ``classify`` over one hidden split in eval mode without gradients; save predictions.

    The stored dtype says what the inputs are: uint8 pixels become ``x / 255`` (what
    ``ToTensor()`` gives), a float array (stored already normalised) is the input as it is.
    """
    import torch

    data = open_inputs(inputs)
    scale = 255.0 if data.dtype == np.uint8 else 1.0
    n = data.shape[0]
    predictions = np.empty(n, dtype=np.int64)
    model.eval()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = torch.from_numpy(np.array(data[start:stop])).float()
            if scale != 1.0:
                x.div_(scale)
            got = module.classify(model, x)
            if not torch.is_tensor(got):
                got = torch.as_tensor(np.asarray(got))
            if tuple(got.shape) != (stop - start,):
                raise PartFailed(
                    f"classify(model, x) returned shape {tuple(got.shape)} for a batch of "
                    f"{stop - start} images on {name}; it must return shape (B,) of class indices."
                )
            if got.dtype.is_floating_point or got.dtype.is_complex or got.dtype == torch.bool:
                raise PartFailed(
                    f"classify(model, x) returned dtype {got.dtype}; it must return integer "
                    "class indices (e.g. scores.argmax(dim=1))."
                )
            predictions[start:stop] = got.detach().cpu().to(torch.int64).numpy()
    tmp = out_file.with_suffix(".tmp.npy")
    np.save(tmp, predictions)
    os.replace(tmp, out_file)
    return n
