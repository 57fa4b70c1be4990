"""Named, seeded transforms that make one hidden split from another (``from = "transform"``).

Each takes uint8 images (N, C, H, W) and a seed and returns new uint8 images of the same
shape; image ``i`` depends only on ``(seed, i)`` and its own pixels, so a transform gives the
same bytes whatever the batch. A new transform is one function and one line in TRANSFORMS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PIL import Image

from grader.datasets.augment import augment


@dataclass(frozen=True)
class TransformKind:
    """A transform: its function, its parameters (None: required) and a line for the manifest."""

    apply: Callable[..., np.ndarray]
    params: Mapping[str, float | None]
    describe: str


def _pil(image: np.ndarray) -> Image.Image:
    if image.shape[0] == 1:
        return Image.fromarray(np.ascontiguousarray(image[0]))
    return Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))


def _array(pil: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(pil, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def rotate(images: np.ndarray, seed: int, *, degrees: float) -> np.ndarray:
    """Each image rotated by an angle drawn uniformly from [-degrees, degrees] (counter-clockwise
    for positive angles), about its centre, nearest pixel, the corners filled with 0: what
    ``torchvision.transforms.functional.rotate(image, angle, fill=0)`` does on a PIL image."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, 1 or 3, H, W), got {images.dtype} {images.shape}")
    if seed < 0 or degrees < 0:
        raise ValueError(f"seed and degrees must be >= 0, got seed={seed}, degrees={degrees}")
    out = np.empty_like(images)
    fill = 0 if images.shape[1] == 1 else (0, 0, 0)
    for i, image in enumerate(images):
        angle = float(np.random.default_rng([seed, i]).uniform(-degrees, degrees))
        turned = _pil(image).rotate(angle, resample=Image.Resampling.NEAREST, fillcolor=fill)
        out[i] = _array(turned, images.shape[1])
    return out


def rotation_angles(count: int, seed: int, degrees: float) -> np.ndarray:
    """The angles :func:`rotate` draws for images 0..count-1 (for tests and reports)."""
    return np.array([np.random.default_rng([seed, i]).uniform(-degrees, degrees) for i in range(count)])


TRANSFORMS: Mapping[str, TransformKind] = {
    "augment": TransformKind(
        augment, {}, "two to four random augmentations per image (grader.datasets.augment)"
    ),
    "rotate": TransformKind(
        rotate, {"degrees": None}, "rotated by a uniform random angle, corners filled with 0"
    ),
}


def apply_transform(name: str, images: np.ndarray, seed: int, params: Mapping[str, float]) -> np.ndarray:
    """``images`` through the transform called ``name`` with ``seed`` and its parameters."""
    return TRANSFORMS[name].apply(images, seed, **params)
