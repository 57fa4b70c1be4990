"""Real dogs-and-cats data from an instructor's image folders, and synthetic images written as PNGs.

The tree is ``ROOT/ORIG/<class>/*.jpg`` and ``ROOT/NEW/<class>/...`` (any depth below the
class folder, like torchvision's ImageFolder; names starting with "." are ignored). Class
names are the sorted folder names of ORIG. Each image is opened with PIL, converted to RGB
and resized to 96x96 exactly as ``torchvision.transforms.Resize((96, 96))`` does on a PIL
image (bilinear with antialiasing; no EXIF rotation, like torchvision's default loader).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from grader.datasets import synthetic
from grader.datasets.augment import augment
from grader.datasets.errors import DataBuildError

IMAGE_SIZE = 96
# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FOLDER_SPLITS = ("ORIG", "NEW")

log = logging.getLogger(__name__)


def resize_like_torchvision(image: Image.Image, size: int = IMAGE_SIZE) -> np.ndarray:
    """RGB uint8 (3, size, size): what ``Resize((size, size))`` + ``ToTensor()`` give, times 255."""
    rgb = image.convert("RGB")
    resized = rgb.resize((size, size), Image.Resampling.BILINEAR)  # = torchvision's PIL path
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def load_image(path: Path, size: int = IMAGE_SIZE) -> np.ndarray:
    """One image file as uint8 (3, size, size); DataBuildError names the file if unreadable."""
    try:
        with Image.open(path) as image:
            return resize_like_torchvision(image, size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataBuildError(f"cannot read image {path}: {exc}") from exc


def class_folders(folder: Path) -> tuple[str, ...]:
    """The sorted class folder names directly under ``folder``."""
    if not folder.is_dir():
        raise DataBuildError(f"image folder {folder} does not exist")
    return tuple(
        sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    )


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere under ``folder``, in a stable (sorted) order."""
    found: list[Path] = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(
            Path(here) / name
            for name in sorted(files)
            if not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)
        )
    return found


def load_image_folder(
    folder: Path, classes: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images uint8 (N, 3, 96, 96), labels int64 (N,) and class names of ``folder/<class>/...``."""
    folder = Path(folder)
    found = class_folders(folder)
    if classes is not None and found != classes:
        raise DataBuildError(
            f"image folder {folder} has classes ({', '.join(found) or 'none'}); "
            f"expected the classes of ORIG ({', '.join(classes)})"
        )
    if len(found) < 2:
        raise DataBuildError(
            f"image folder {folder} needs at least 2 class folders, found {len(found)}"
        )
    classes = found
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files = image_files(folder / name)
        if not files:
            raise DataBuildError(
                f"class folder {folder / name} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        paths.extend(files)
        labels.extend([label] * len(files))
    images = np.empty((len(paths), 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i] = load_image(path)
    return images, np.asarray(labels, dtype=np.int64), classes


def load_dogs_cats(
    root: Path, *, seed: int, progress: Callable[[str], None] | None = None
) -> tuple[tuple[str, ...], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Class names and ORIG, AUG, NEW (images, labels) from ``root``; AUG is augmented ORIG."""
    root = Path(root)
    if not root.is_dir():
        raise DataBuildError(f"dogs-and-cats folder {root} does not exist")
    for split in FOLDER_SPLITS:
        if not (root / split).is_dir():
            raise DataBuildError(
                f"dogs-and-cats folder {root} has no {split}/ folder (needs ORIG/ and NEW/)"
            )
    say = progress or log.info
    say(f"dogs_cats: reading {root / 'ORIG'}")
    orig_x, orig_y, classes = load_image_folder(root / "ORIG")
    say(f"dogs_cats: reading {root / 'NEW'}")
    new_x, new_y, _ = load_image_folder(root / "NEW", classes)
    say(f"dogs_cats: augmenting {len(orig_x)} ORIG images into AUG")
    splits = {
        "ORIG": (orig_x, orig_y),
        "AUG": (augment(orig_x, seed), orig_y.copy()),
        "NEW": (new_x, new_y),
    }
    return classes, splits


def write_image_folder(
    dest: Path, split: str = "train", n: int = 2000, seed: int = 0, num_classes: int = 2
) -> tuple[str, ...]:
    """Write ``n`` synthetic images as ``dest/<class>/NNNNN.png``; returns the class names."""
    dest = Path(dest)
    images, labels = synthetic.make_split(split, n, seed, num_classes)
    classes = synthetic.class_names(num_classes)
    for name in classes:
        (dest / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image.transpose(1, 2, 0)).save(dest / classes[label] / f"{i:05d}.png")
    return classes
