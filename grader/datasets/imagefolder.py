"""Real dogs-and-cats data from an instructor's image folders, and synthetic images written as PNGs.

Two layouts of ROOT are read (any depth below a class folder, like torchvision's
ImageFolder; names starting with "." are ignored):

- **splits**: ``ROOT/ORIG/<class>/*.jpg`` and ``ROOT/NEW/<class>/...``, the hidden splits as
  they were collected (NEW: newly collected, harder images). Class names are the sorted
  folder names of ORIG.
- **classes**: ``ROOT/<class>/*.jpg``, one folder per class as the course's own data comes.
  Each class is split with a seed: a held-out ``new_fraction`` (default 20 %) becomes NEW,
  the rest ORIG. NEW is then *not* newly collected: it is drawn from the same photos as
  ORIG, and the manifest says so.

AUG is always ORIG passed through :func:`grader.datasets.augment.augment`. Each image is
opened with PIL, converted to RGB and resized to 96x96 exactly as
``torchvision.transforms.Resize((96, 96))`` does on a PIL image (bilinear with
antialiasing; no EXIF rotation, like torchvision's default loader).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
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
SPLITS_LAYOUT = "splits"  # ROOT/ORIG/<class>, ROOT/NEW/<class>
CLASSES_LAYOUT = "classes"  # ROOT/<class>, split with a seed
DEFAULT_NEW_FRACTION = 0.2

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


@dataclass(frozen=True)
class DogsCats:
    """Dogs-and-cats splits read from image folders, and how they were made."""

    classes: tuple[str, ...]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # ORIG, AUG, NEW -> (images, labels)
    layout: str  # SPLITS_LAYOUT or CLASSES_LAYOUT
    source: str  # for the manifest: where the splits came from
    note: str = ""  # for the manifest: what a reader must know (NEW held out, not new)


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(
            e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
            for e in entries
        )


def detect_layout(root: Path) -> str:
    """SPLITS_LAYOUT or CLASSES_LAYOUT for ``root``; DataBuildError for an empty or mixed one."""
    root = Path(root)
    if not root.is_dir():
        raise DataBuildError(f"dogs-and-cats folder {root} does not exist")
    folders = class_folders(root)
    splits = [f for f in folders if f in FOLDER_SPLITS]
    others = [f for f in folders if f not in FOLDER_SPLITS]
    expected = "either ORIG/<class>/ and NEW/<class>/ folders, or one folder per class (<class>/*.jpg)"
    if splits and others:
        raise DataBuildError(
            f"dogs-and-cats folder {root} mixes two layouts: {', '.join(f + '/' for f in splits)} "
            f"beside {', '.join(f + '/' for f in others)}; use {expected}"
        )
    if splits:
        missing = [s for s in FOLDER_SPLITS if s not in splits]
        if missing:
            raise DataBuildError(
                f"dogs-and-cats folder {root} has no {missing[0]}/ folder (needs ORIG/ and NEW/)"
            )
        return SPLITS_LAYOUT
    if not others:
        what = "images but no class folders" if _has_images(root) else "no folders"
        raise DataBuildError(f"dogs-and-cats folder {root} holds {what}; expected {expected}")
    return CLASSES_LAYOUT


def held_out(labels: np.ndarray, fraction: float, seed: int, classes: tuple[str, ...]) -> np.ndarray:
    """A mask of the items held out as NEW: ``fraction`` of each class (at least one, and at
    least one left for ORIG), chosen by a seed of its own per class."""
    mask = np.zeros(len(labels), dtype=bool)
    for label, name in enumerate(classes):
        items = np.flatnonzero(labels == label)
        digest = hashlib.sha256(f"{seed}:dogs_cats:NEW:{name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        count = min(max(1, round(len(items) * fraction)), len(items) - 1)
        mask[items[rng.permutation(len(items))[:count]]] = True
    return mask


def load_dogs_cats(
    root: Path,
    *,
    seed: int,
    new_fraction: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> DogsCats:
    """ORIG, AUG, NEW from either layout of ``root`` (see the module's docstring)."""
    root = Path(root)
    layout = detect_layout(root)
    say = progress or log.info
    if layout == SPLITS_LAYOUT:
        if new_fraction is not None:
            raise DataBuildError(
                f"dogs-and-cats folder {root} has ORIG/ and NEW/ folders: a NEW fraction only "
                "applies to one folder per class"
            )
        say(f"dogs_cats: {root} has ORIG/ and NEW/ folders; reading {root / 'ORIG'}")
        orig_x, orig_y, classes = load_image_folder(root / "ORIG")
        say(f"dogs_cats: reading {root / 'NEW'}")
        new_x, new_y, _ = load_image_folder(root / "NEW", classes)
        source = f"image folders {root}/ORIG and {root}/NEW"
        note = ""
    else:
        fraction = DEFAULT_NEW_FRACTION if new_fraction is None else new_fraction
        if not 0.0 < fraction < 1.0:
            raise DataBuildError(f"the NEW fraction must lie between 0 and 1, not {fraction}")
        images, labels, classes = load_image_folder(root)
        per_class = np.bincount(labels, minlength=len(classes))
        small = [f"{name} ({int(n)})" for name, n in zip(classes, per_class, strict=True) if n < 2]
        if small:
            raise DataBuildError(
                f"dogs-and-cats folder {root}: the seeded split needs at least 2 images per class "
                f"(one for ORIG, one for NEW); too few in {', '.join(small)}"
            )
        new = held_out(labels, fraction, seed, classes)
        orig_x, orig_y, new_x, new_y = images[~new], labels[~new], images[new], labels[new]
        say(f"dogs_cats: {root} has one folder per class ({', '.join(classes)}): a seeded split "
            f"(seed {seed}) holds out {fraction:.0%} of each class as NEW ({len(new_y)} images), "
            f"the rest is ORIG ({len(orig_y)})")
        source = (f"one image folder per class, {root}/<class>, split per class with seed {seed}: "
                  f"{fraction:.0%} held out as NEW, the rest ORIG")
        note = (f"NEW is a seeded held-out {fraction:.0%} of the same image folders as ORIG, not "
                "newly collected photos: it measures the same distribution as ORIG.")
    say(f"dogs_cats: augmenting {len(orig_x)} ORIG images into AUG")
    splits = {
        "ORIG": (orig_x, orig_y),
        "AUG": (augment(orig_x, seed), orig_y.copy()),
        "NEW": (new_x, new_y),
    }
    return DogsCats(classes, splits, layout, source + "; AUG = ORIG passed through grader.datasets.augment",
                    note)


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
