"""Deterministic augmentations ("other imaging conditions") of uint8 (N, 3, H, W) image arrays.

Image ``i`` gets two to four transforms, chosen with its parameters from ``(seed, i)`` alone,
so the result depends neither on the batch size nor on the other images.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

TRANSFORMS = (
    "crop_rescale",
    "rotate",
    "hflip",
    "blur",
    "brightness_contrast",
    "saturation",
    "noise",
)


def augment(images: np.ndarray, seed: int) -> np.ndarray:
    """Augmented copies of ``images`` (uint8, (N, 3, H, W)); the same seed gives the same bytes."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"expected uint8 images of shape (N, 3, H, W), got {images.dtype} {images.shape}"
        )
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    out = np.empty_like(images)
    for i, image in enumerate(images):
        out[i] = augment_one(image, np.random.default_rng([seed, i]))
    return out


def augment_one(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One augmented copy of a uint8 (3, H, W) image; every parameter is drawn, used or not."""
    _, height, width = image.shape
    count = int(rng.integers(2, 5))
    chosen = {TRANSFORMS[k] for k in rng.choice(len(TRANSFORMS), size=count, replace=False)}
    scale = rng.uniform(0.7, 0.9)
    offset = rng.uniform(0, 1, size=2)
    angle = rng.uniform(10, 25) * rng.choice((-1, 1))
    radius = rng.uniform(0.6, 1.4)
    brightness, contrast = rng.uniform(0.65, 1.35), rng.uniform(0.6, 1.4)
    saturation = rng.uniform(0.2, 1.7)
    sigma = rng.uniform(4, 12)
    noise_seed = int(rng.integers(2**32))

    pil = Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0)))
    if "crop_rescale" in chosen:
        w, h = round(width * scale), round(height * scale)
        x0, y0 = offset[0] * (width - w), offset[1] * (height - h)
        pil = pil.resize((width, height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
    if "rotate" in chosen:
        fill = tuple(int(c) for c in image.reshape(3, -1).mean(axis=1))
        pil = pil.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=fill)
    if "hflip" in chosen:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if "blur" in chosen:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    arr = np.asarray(pil, dtype=np.float32).transpose(2, 0, 1)
    if "brightness_contrast" in chosen:
        mean = arr.mean()
        arr = ((arr - mean) * contrast + mean) * brightness
    if "saturation" in chosen:
        grey = (0.299 * arr[0] + 0.587 * arr[1] + 0.114 * arr[2])[None]
        arr = grey + (arr - grey) * saturation
    if "noise" in chosen:
        noise = np.random.default_rng(noise_seed).standard_normal(arr.shape, dtype=np.float32)
        arr = arr + noise * sigma
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)
