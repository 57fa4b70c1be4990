"""Build the hidden test sets into a folder, atomically, and write their manifest last."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from grader.datasets import synthetic
from grader.datasets.errors import DataBuildError
from grader.datasets.fashion import (
    DEFAULT_FASHION_DIR,
    FASHION_CLASSES,
    load_fashion_test,
    public_image_count,
)
from grader.datasets.imagefolder import IMAGE_SIZE, load_dogs_cats
from grader.datasets.manifest import (
    INPUTS,
    LABELS,
    MANIFEST_NAME,
    DatasetInfo,
    Manifest,
    SplitInfo,
    load_manifest,
    sha256_file,
    write_manifest,
)
from grader.datasets.provenance import Provenance

log = logging.getLogger(__name__)

DOGS_CATS_SPLITS = ("ORIG", "AUG", "NEW")
DEFAULT_SYNTHETIC_COUNTS: Mapping[str, int] = {"ORIG": 500, "AUG": 500, "NEW": 500}
SYNTHETIC_NOTE = (
    "This is a synthetic stand-in, not real photos: procedurally drawn cat and dog faces, "
    "because no real dogs-and-cats photos can be downloaded here; build from real image "
    "folders with `grader build-tests --dogs-cats DIR`."
)
# A FashionMNIST set with more than this share of public images is recorded as public.
PUBLIC_SHARE_LIMIT = 0.01
PRIVATE_FASHION_HINT = (
    "For a course, build from your own private FashionMNIST-format set: "
    "`grader build-tests --fashion-mnist DIR`."
)
FASHION_PREPROCESSING = (
    "uint8 grayscale 28x28 images stored as (N, 1, 28, 28); the model input is the array / 255 "
    "(what transforms.ToTensor() gives), values in [0, 1], no normalisation"
)
DOGS_CATS_PREPROCESSING = (
    "RGB images resized to 96x96 as torchvision.transforms.Resize((96, 96)) does on a PIL image "
    "(bilinear, antialias), stored uint8 (N, 3, 96, 96); the model input is the array / 255 "
    "(what transforms.ToTensor() gives), values in [0, 1], no normalisation"
)


def build_hidden_data(
    out: Path,
    *,
    fashion_dir: Path | None = DEFAULT_FASHION_DIR,
    dogs_cats_dir: Path | None = None,
    synthetic_counts: Mapping[str, int] = DEFAULT_SYNTHETIC_COUNTS,
    seed: int = 1234,
    num_classes: int = 2,
    new_fraction: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> Manifest:
    """Build FashionMNIST (unless ``fashion_dir`` is None) and dogs-and-cats into ``out``.

    Without ``dogs_cats_dir`` the dogs-and-cats set is the synthetic stand-in; with it, either
    of the layouts :mod:`grader.datasets.imagefolder` reads (``new_fraction``: the share of
    each class held out as NEW from one folder per class). Everything is written into a
    temporary sibling folder, verified, and only then swapped in for ``out``.
    """
    out = Path(out)
    say = progress or log.info
    _check_counts(synthetic_counts, dogs_cats_dir is None)
    if dogs_cats_dir is not None and not Path(dogs_cats_dir).is_dir():
        raise DataBuildError(f"dogs-and-cats folder {dogs_cats_dir} does not exist")
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        datasets: dict[str, DatasetInfo] = {}
        if fashion_dir is not None:
            datasets["fashion_mnist"] = _fashion(tmp, Path(fashion_dir), say)
        else:
            say("fashion_mnist: skipped (no FashionMNIST folder given)")
        if dogs_cats_dir is not None:
            datasets["dogs_cats"] = _dogs_cats_folders(tmp, Path(dogs_cats_dir), seed, new_fraction, say)
        else:
            datasets["dogs_cats"] = _dogs_cats_synthetic(
                tmp, synthetic_counts, seed, num_classes, say
            )
        say("hashing files and writing the manifest")
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for top in (INPUTS, LABELS)
            for p in sorted((tmp / top).rglob("*.npy"))
        }
        built_at = datetime.now(UTC).isoformat(timespec="seconds")
        write_manifest(tmp, datasets, files, built_at)
        load_manifest(tmp, verify=True)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_manifest(out, verify=False)


def _check_counts(counts: Mapping[str, int], synthetic_used: bool) -> None:
    if set(counts) != set(DOGS_CATS_SPLITS):
        raise ValueError(
            f"synthetic_counts needs exactly {', '.join(DOGS_CATS_SPLITS)}, got {dict(counts)}"
        )
    if synthetic_used and any(n < 1 for n in counts.values()):
        raise ValueError(f"every synthetic split needs at least 1 image, got {dict(counts)}")


def check_replaceable(out: Path) -> None:
    """Refuse to replace anything that is not an earlier build (or an empty folder)."""
    if not out.exists():
        return
    if not out.is_dir() or out.is_symlink():
        raise DataBuildError(f"output {out} exists and is not a folder; choose another --out")
    if any(out.iterdir()) and not (out / MANIFEST_NAME).is_file():
        raise DataBuildError(
            f"output {out} is not empty and holds no {MANIFEST_NAME}; refusing to replace it"
        )


def swap_in(tmp: Path, out: Path) -> None:
    """Put the finished build at ``out``; an earlier build is moved aside, then removed."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / "set")
    try:
        os.rename(tmp, out)
    except OSError:
        os.rename(old / "set", out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _save_split(
    root: Path, dataset: str, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> SplitInfo:
    inputs = root / INPUTS / dataset / f"{split}.npy"
    label_path = root / LABELS / dataset / f"{split}.npy"
    for path, array in ((inputs, images), (label_path, labels)):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    counts = tuple(int(c) for c in np.bincount(labels, minlength=num_classes))
    return SplitInfo(split, len(labels), inputs, label_path, counts)


def fashion_provenance(
    images: np.ndarray, public_dir: Path = DEFAULT_FASHION_DIR
) -> tuple[Provenance, str]:
    """Public when more than PUBLIC_SHARE_LIMIT of ``images`` are public FashionMNIST images
    (their labels are anyone's), else private; and the note that says why."""
    known = public_image_count(images, public_dir)
    if known is None:
        return Provenance.PRIVATE, (
            f"Not compared with the public FashionMNIST set ({public_dir} is not installed): "
            "make sure these images are your own."
        )
    share = f"{known:,} of its {len(images):,} images are images of the public FashionMNIST set"
    if known > PUBLIC_SHARE_LIMIT * len(images):
        return Provenance.PUBLIC, (
            f"{share} (train or t10k), whose labels anyone can have: a submission can carry "
            "them (inside a checkpoint, say) and score on them without classifying anything. "
            + PRIVATE_FASHION_HINT
        )
    return Provenance.PRIVATE, f"{share}." if known else ""


def _fashion(root: Path, folder: Path, say: Callable[[str], None]) -> DatasetInfo:
    say(f"fashion_mnist: reading the test split from {folder}")
    images, labels = load_fashion_test(folder)
    provenance, note = fashion_provenance(images)
    split = _save_split(
        root, "fashion_mnist", "test", images[:, None], labels, len(FASHION_CLASSES)
    )
    say(f"fashion_mnist: test, {split.count} images, {provenance}")
    return DatasetInfo(
        name="fashion_mnist",
        title="FashionMNIST test set" + (" (public)" if provenance is Provenance.PUBLIC else ""),
        provenance=provenance,
        note=note,
        source=f"FashionMNIST-format IDX files t10k-*-ubyte[.gz] from {folder}",
        classes=FASHION_CLASSES,
        input_shape=(1, 28, 28),
        preprocessing=FASHION_PREPROCESSING,
        splits={"test": split},
    )


def _dogs_cats_synthetic(
    root: Path, counts: Mapping[str, int], seed: int, num_classes: int, say: Callable[[str], None]
) -> DatasetInfo:
    classes = synthetic.class_names(num_classes)
    splits: dict[str, SplitInfo] = {}
    for name in DOGS_CATS_SPLITS:
        say(f"dogs_cats: drawing {counts[name]} synthetic {name} images ({num_classes} classes)")
        images, labels = synthetic.make_split(name, counts[name], seed, num_classes)
        splits[name] = _save_split(root, "dogs_cats", name, images, labels, num_classes)
    return DatasetInfo(
        name="dogs_cats",
        title="Dogs and cats (synthetic stand-in)",
        provenance=Provenance.SYNTHETIC,
        note=SYNTHETIC_NOTE,
        source="grader.datasets.synthetic: ORIG and NEW drawn procedurally, AUG = ORIG-like "
        "images passed through grader.datasets.augment",
        classes=classes,
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        preprocessing=DOGS_CATS_PREPROCESSING,
        splits=splits,
    )


def _dogs_cats_folders(
    root: Path, folder: Path, seed: int, new_fraction: float | None, say: Callable[[str], None]
) -> DatasetInfo:
    data = load_dogs_cats(folder, seed=seed, new_fraction=new_fraction, progress=say)
    classes = data.classes
    splits = {
        name: _save_split(root, "dogs_cats", name, *data.splits[name], len(classes))
        for name in DOGS_CATS_SPLITS
    }
    say("dogs_cats: " + ", ".join(f"{s.name} {s.count}" for s in splits.values()) + " images")
    return DatasetInfo(
        name="dogs_cats",
        title="Dogs and cats",
        provenance=Provenance.PRIVATE,
        note=data.note,
        source=data.source,
        classes=classes,
        input_shape=(3, IMAGE_SIZE, IMAGE_SIZE),
        preprocessing=DOGS_CATS_PREPROCESSING,
        splits=splits,
    )
