"""Hidden splits from an instructor's image folders, and synthetic images written as PNGs.

A spec's ``from = "image_folder"`` splits are read from one folder ROOT in either of two
layouts (any depth below a class folder, like torchvision's ImageFolder; names starting
with "." are ignored):

- **splits**: ``ROOT/<folder>/<class>/*.jpg``, one folder per split as they were
  collected (``folder`` defaults to the split's name). Class names are the sorted folder
  names of the first split.
- **classes**: ``ROOT/<class>/*.jpg``, one folder per class. The split marked ``held_out``
  takes that share of each class, chosen with a seed, and the other split the rest; the
  held-out split is then drawn from the same photos, and the manifest says so.

Each image is opened with PIL, converted to RGB and resized exactly as
``torchvision.transforms.Resize((H, W))`` does on a PIL image (bilinear with antialiasing;
no EXIF rotation, like torchvision's default loader).
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
from grader.datasets.errors import DataBuildError

IMAGE_SIZE = (96, 96)
# torchvision.datasets.folder.IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLITS_LAYOUT = "splits"  # ROOT/<split folder>/<class>
CLASSES_LAYOUT = "classes"  # ROOT/<class>, split with a seed

log = logging.getLogger(__name__)


def resize_like_torchvision(image: Image.Image, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """RGB uint8 (3, H, W): what ``Resize((H, W))`` + ``ToTensor()`` give, times 255."""
    rgb = image.convert("RGB")
    resized = rgb.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # = torchvision's PIL path
    return np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)


def load_image(path: Path, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """One image file as uint8 (3, H, W); DataBuildError names the file if unreadable."""
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
    folder: Path, classes: tuple[str, ...] | None = None, *, size: tuple[int, int] = IMAGE_SIZE,
    first: str = "the first split",
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images uint8 (N, 3, H, W), labels int64 (N,) and class names of ``folder/<class>/...``;
    ``classes``: the ones it must have (those of ``first``)."""
    folder = Path(folder)
    found = class_folders(folder)
    if classes is not None and found != classes:
        raise DataBuildError(
            f"image folder {folder} has classes ({', '.join(found) or 'none'}); "
            f"expected the classes of {first} ({', '.join(classes)})"
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
    images = np.empty((len(paths), 3, *size), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i] = load_image(path, size)
    return images, np.asarray(labels, dtype=np.int64), classes


@dataclass(frozen=True)
class FolderSplits:
    """Splits read from image folders, and how they were made."""

    classes: tuple[str, ...]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]  # split -> (images, labels)
    layout: str  # SPLITS_LAYOUT or CLASSES_LAYOUT
    source: str  # for the manifest: where the splits came from
    note: str = ""  # for the manifest: what a reader must know (a held-out split is not new)


def _has_images(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(
            e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTENSIONS)
            for e in entries
        )


def detect_layout(root: Path, split_folders: tuple[str, ...]) -> str:
    """SPLITS_LAYOUT or CLASSES_LAYOUT for ``root``; DataBuildError for an empty or mixed one."""
    root = Path(root)
    if not root.is_dir():
        raise DataBuildError(f"image folder {root} does not exist")
    folders = class_folders(root)
    splits = [f for f in folders if f in split_folders]
    others = [f for f in folders if f not in split_folders]
    wanted = " and ".join(f"{f}/<class>/" for f in split_folders)
    expected = f"either {wanted} folders, or one folder per class (<class>/*.jpg)"
    if splits and others:
        raise DataBuildError(
            f"image folder {root} mixes two layouts: {', '.join(f + '/' for f in splits)} "
            f"beside {', '.join(f + '/' for f in others)}; use {expected}"
        )
    if splits:
        missing = [s for s in split_folders if s not in splits]
        if missing:
            raise DataBuildError(
                f"image folder {root} has no {missing[0]}/ folder (needs "
                f"{' and '.join(f + '/' for f in split_folders)})"
            )
        return SPLITS_LAYOUT
    if not others:
        what = "images but no class folders" if _has_images(root) else "no folders"
        raise DataBuildError(f"image folder {root} holds {what}; expected {expected}")
    return CLASSES_LAYOUT


def held_out(
    labels: np.ndarray, fraction: float, seed: int, classes: tuple[str, ...], key: str
) -> np.ndarray:
    """A mask of the items held out: ``fraction`` of each class (at least one, and at least one
    left), chosen by a seed of its own per class, from ``seed``, ``key`` and the class name."""
    mask = np.zeros(len(labels), dtype=bool)
    for label, name in enumerate(classes):
        items = np.flatnonzero(labels == label)
        digest = hashlib.sha256(f"{seed}:{key}:{name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        count = min(max(1, round(len(items) * fraction)), len(items) - 1)
        mask[items[rng.permutation(len(items))[:count]]] = True
    return mask


def load_folder_splits(
    root: Path,
    folders: dict[str, str],
    *,
    dataset: str,
    held: tuple[str, float, int] | None,
    size: tuple[int, int] = IMAGE_SIZE,
    fraction_given: bool = False,
    progress: Callable[[str], None] | None = None,
) -> FolderSplits:
    """The image-folder splits of ``dataset`` from either layout of ``root`` (see the module's
    docstring). ``folders``: split -> its folder; ``held``: (split, fraction, seed) of the
    held-out split; ``fraction_given``: the fraction came from the command line."""
    root = Path(root)
    layout = detect_layout(root, tuple(folders.values()))
    say = progress or log.info
    names = list(folders)
    if layout == SPLITS_LAYOUT:
        if fraction_given:
            raise DataBuildError(
                f"image folder {root} has {' and '.join(f + '/' for f in folders.values())} "
                "folders: a held-out fraction only applies to one folder per class"
            )
        say(f"{dataset}: {root} has {' and '.join(f + '/' for f in folders.values())} folders")
        splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        classes: tuple[str, ...] | None = None
        for name, folder in folders.items():
            say(f"{dataset}: reading {root / folder}")
            x, y, found = load_image_folder(root / folder, classes, size=size, first=names[0])
            classes = classes or found
            splits[name] = (x, y)
        assert classes is not None
        source = "image folders " + " and ".join(f"{root}/{f}" for f in folders.values())
        return FolderSplits(classes, splits, layout, source)
    if held is None:
        if len(folders) != 1:
            raise DataBuildError(
                f"image folder {root} holds one folder per class, but the spec reads "
                f"{len(folders)} splits from it and holds none out ('held_out')"
            )
        images, labels, classes = load_image_folder(root, size=size)
        source = f"one image folder per class, {root}/<class>"
        return FolderSplits(classes, {names[0]: (images, labels)}, layout, source)
    out_name, fraction, seed = held
    rest = next(n for n in names if n != out_name)
    images, labels, classes = load_image_folder(root, size=size)
    per_class = np.bincount(labels, minlength=len(classes))
    small = [f"{name} ({int(n)})" for name, n in zip(classes, per_class, strict=True) if n < 2]
    if small:
        raise DataBuildError(
            f"image folder {root}: the seeded split needs at least 2 images per class "
            f"(one for {rest}, one for {out_name}); too few in {', '.join(small)}"
        )
    mask = held_out(labels, fraction, seed, classes, f"{dataset}:{out_name}")
    say(f"{dataset}: {root} has one folder per class ({', '.join(classes)}): a seeded split "
        f"(seed {seed}) holds out {fraction:.0%} of each class as {out_name} ({int(mask.sum())} "
        f"images), the rest is {rest} ({int((~mask).sum())})")
    source = (f"one image folder per class, {root}/<class>, split per class with seed {seed}: "
              f"{fraction:.0%} held out as {out_name}, the rest {rest}")
    note = (f"{out_name} is a seeded held-out {fraction:.0%} of the same image folders as {rest}, "
            f"not newly collected photos: it measures the same distribution as {rest}.")
    splits = {rest: (images[~mask], labels[~mask]), out_name: (images[mask], labels[mask])}
    return FolderSplits(classes, {n: splits[n] for n in names}, layout, source, note)


def write_image_folder(
    dest: Path, n: int = 2000, seed: int = 0, num_classes: int = 2, *, style: str = "plain",
    stream: int = synthetic.TRAIN_STREAM,
) -> tuple[str, ...]:
    """Write ``n`` synthetic images as ``dest/<class>/NNNNN.png``; returns the class names."""
    dest = Path(dest)
    images, labels = synthetic.draw_images(style, n, seed, stream=stream, num_classes=num_classes)
    classes = synthetic.class_names(num_classes)
    for name in classes:
        (dest / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray(image.transpose(1, 2, 0)).save(dest / classes[label] / f"{i:05d}.png")
    return classes
