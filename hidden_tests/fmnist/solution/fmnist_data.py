"""The lab's data, as the grader prepares it: IDX files, the seeded ROTATED copy of the test
set, normalisation. Shared by ``train.py`` and ``evaluate.py``; needs numpy, torch, torchvision.

ROTATED (the grader's hidden split, reproduced here so the numbers can be re-measured):
image ``i`` of the test set is rotated by ``angle_i = default_rng([seed, i]).uniform(-25, 25)``
degrees (counter-clockwise positive) about the image centre, nearest pixel, the corners
filled with 0 (black), on the uint8 image, and kept as uint8; like every split it is then
normalised. The angle depends on (seed, i) alone, not on the batch or the other images.
This is the grader's ``rotate`` transform (grader/datasets/transforms.py), byte for byte.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_DATA = Path("/usr/share/datasets/fashion-mnist")
MEAN, STD = 0.2860, 0.3530  # of the 60,000 training images, pixels in [0, 1]
DEGREES = 25.0
ROTATED_SEED = 25013  # the same number as [datasets.fashion_mnist.splits.ROTATED] seed
_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (gzipped or plain) of unsigned bytes as a uint8 array."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw[4 : 4 + 4 * ndim], dtype=">u4"))
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims).copy()


def load_split(data_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of "train" or "test"."""
    found = []
    for kind, dims in (("images", 3), ("labels", 1)):
        stem = f"{_PREFIX[split]}-{kind}-idx{dims}-ubyte"
        path = next((data_dir / n for n in (f"{stem}.gz", stem) if (data_dir / n).is_file()), None)
        if path is None:
            raise SystemExit(f"{stem}[.gz] not found in {data_dir}")
        found.append(read_idx(path))
    images, labels = found
    return images, labels.astype(np.int64)


def rotated_copy(images: np.ndarray, seed: int = ROTATED_SEED,
                 degrees: float = DEGREES) -> np.ndarray:
    """The ROTATED split of uint8 ``images`` (N, 28, 28): see the module's docstring.

    torchvision's ``rotate`` on a PIL image with its default NEAREST interpolation is PIL's
    own ``Image.rotate(angle, resample=NEAREST, fillcolor=0)``: the bytes the grader's
    ``rotate`` transform (grader/datasets/transforms.py) builds, and some 20 times faster
    than rotating tensors.
    """
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.functional import rotate

    out = np.empty_like(images)
    for i, image in enumerate(images):
        angle = float(np.random.default_rng([seed, i]).uniform(-degrees, degrees))
        turned = rotate(Image.fromarray(image), angle,
                        interpolation=InterpolationMode.NEAREST, fill=0)
        out[i] = np.asarray(turned)
    return out


def normalise(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, 28, 28) or (N, 1, 28, 28) -> float32 (N, 1, 28, 28): ToTensor then Normalize."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[:, None]
    return (x.float() / 255.0 - MEAN) / STD


def random_rotation(x01: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Each image of a float batch (B, 1, H, W) in [0, 1] turned by its own uniform angle in
    [-degrees, degrees], bilinear, fill 0: RandomRotation(degrees, fill=0,
    interpolation=BILINEAR) per image, done for the whole batch in one grid_sample."""
    angles = (torch.rand(len(x01), generator=generator) * 2 - 1) * degrees
    rad = torch.deg2rad(angles)
    cos, sin = torch.cos(rad), torch.sin(rad)
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x01.shape), align_corners=False)
    return F.grid_sample(x01, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
