"""Build the hidden test sets a spec declares into a folder, atomically, manifest last.

What each split is made of comes from the spec's ``[datasets.*]`` tables
(:mod:`grader.datasets.spec`); this module only runs the declared steps: read or draw each
split, apply the named transforms, store the inputs (uint8 pixels, or float32 when the
dataset is normalised) and the labels, hash everything and write the manifest.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from grader.datasets import synthetic
from grader.datasets.errors import DataBuildError
from grader.datasets.idx import load_idx_pair, public_image_count
from grader.datasets.imagefolder import load_folder_splits
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
from grader.datasets.spec import DatasetSpec, Idx, ImageFolder, Synthetic, Transform
from grader.datasets.transforms import TRANSFORMS, apply_transform

log = logging.getLogger(__name__)

# A set read from IDX files with more than this share of public images is recorded as public.
PUBLIC_SHARE_LIMIT = 0.01
EVERY_SYNTHETIC = "*"  # a ``counts`` key: every synthetic (or stand-in) split
Say = Callable[[str], None]
Arrays = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class BuildOptions:
    """What the command line may change in a spec's declarations (None: as declared)."""

    sources: Mapping[str, Path]  # dataset -> its folder of files
    counts: Mapping[str, int]  # "*", "SPLIT" or "DATASET.SPLIT" -> images
    seed: int | None = None  # replaces every seed the spec declares
    synthetic_classes: int | None = None
    held_out: float | None = None  # replaces every held-out share


def build_sets(
    datasets: Mapping[str, DatasetSpec],
    out: Path,
    *,
    sources: Mapping[str, Path] | None = None,
    counts: Mapping[str, int] | None = None,
    seed: int | None = None,
    synthetic_classes: int | None = None,
    held_out: float | None = None,
    only: Collection[str] | None = None,
    progress: Say | None = None,
) -> Manifest:
    """Build ``datasets`` (those named in ``only``, if given) into ``out``.

    A dataset is read from its folder (``sources[name]``, else the spec's ``dir``), or, with
    neither, drawn from its splits' synthetic stand-ins. Everything is written into a
    temporary sibling folder, verified, and only then swapped in for ``out``.
    """
    out = Path(out)
    say = progress or log.info
    chosen = {n: d for n, d in datasets.items() if only is None or n in only}
    options = BuildOptions(dict(sources or {}), dict(counts or {}), seed, synthetic_classes, held_out)
    _check_options(datasets, chosen, options, only)
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        infos = {name: _dataset(tmp, spec, options, say) for name, spec in chosen.items()}
        say("hashing files and writing the manifest")
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for top in (INPUTS, LABELS)
            for p in sorted((tmp / top).rglob("*.npy"))
        }
        built_at = datetime.now(UTC).isoformat(timespec="seconds")
        write_manifest(tmp, infos, files, built_at)
        load_manifest(tmp, verify=True)
        swap_in(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_manifest(out, verify=False)


def _countable(spec: DatasetSpec, split: str) -> bool:
    s = spec.splits[split]
    return s.stand_in is not None or isinstance(s.source, Synthetic | Idx)


def _check_options(
    datasets: Mapping[str, DatasetSpec], chosen: Mapping[str, DatasetSpec], options: BuildOptions,
    only: Collection[str] | None,
) -> None:
    unknown = sorted(set(only or ()) - set(datasets)) + sorted(set(options.sources) - set(datasets))
    if unknown:
        raise DataBuildError(f"the spec declares no dataset '{unknown[0]}' "
                             f"(it declares {', '.join(datasets) or 'none'})")
    for name, folder in options.sources.items():
        if not any(isinstance(s.source, Idx | ImageFolder) for s in datasets[name].splits.values()):
            raise DataBuildError(f"dataset {name} reads no files (all its splits are drawn); "
                                 "it takes no folder")
        if not Path(folder).is_dir():
            raise DataBuildError(f"folder {folder} for dataset {name} does not exist")
    for key, count in options.counts.items():
        if count < 1:
            raise DataBuildError(f"every count must be at least 1, got {key}={count}")
        if key == EVERY_SYNTHETIC:
            continue
        dataset, _, split = key.rpartition(".")
        places = [(n, d) for n, d in chosen.items() if (not dataset or n == dataset) and split in d.splits]
        if not places:
            known = sorted({s for d in chosen.values() for s in d.splits})
            raise DataBuildError(f"count {key}={count}: no split {key} (known: {', '.join(known)})")
        for name, spec in places:
            if not _countable(spec, split):
                raise DataBuildError(f"count {key}={count}: {name}.{split} is made from another "
                                     "split or read whole from a folder; it takes no count")


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


# --------------------------------------------------------------------------- one dataset


def _count(options: BuildOptions, dataset: str, split: str, declared: int | None,
           drawn: bool) -> int | None:
    for key in (f"{dataset}.{split}", split):
        if key in options.counts:
            return options.counts[key]
    if drawn and EVERY_SYNTHETIC in options.counts:
        return options.counts[EVERY_SYNTHETIC]
    return declared


def _folder_of(spec: DatasetSpec, options: BuildOptions) -> Path | None:
    if spec.name in options.sources:
        return Path(options.sources[spec.name])
    reads_files = any(isinstance(s.source, Idx | ImageFolder) for s in spec.splits.values())
    if not reads_files:
        return None
    if spec.folder is not None:
        return spec.folder
    if spec.has_stand_in():
        return None
    raise DataBuildError(f"dataset {spec.name} is read from files: name its folder with "
                         f"`--source {spec.name}=DIR`")


def _dataset(root: Path, spec: DatasetSpec, options: BuildOptions, say: Say) -> DatasetInfo:
    folder = _folder_of(spec, options)
    drawn = folder is None
    classes_n = options.synthetic_classes or spec.synthetic_classes
    arrays: dict[str, Arrays] = {}
    steps: list[str] = []
    note, provenance = "", Provenance.SYNTHETIC if drawn else Provenance.PRIVATE
    classes: tuple[str, ...] = synthetic.class_names(classes_n) if drawn else (spec.classes or ())

    def seed_of(split: str) -> int:
        return options.seed if options.seed is not None else spec.splits[split].seed

    if folder is not None:
        folders = {s.name: s.source for s in spec.splits.values() if isinstance(s.source, ImageFolder)}
        if folders:
            held = next(((n, f.held_out, seed_of(n)) for n, f in folders.items()
                         if f.held_out is not None), None)
            if options.held_out is not None:
                if held is None:
                    raise DataBuildError(f"dataset {spec.name} holds no split out ('held_out'); "
                                         "--held-out does not apply to it")
                held = (held[0], options.held_out, held[2])
            read = load_folder_splits(folder, {n: f.folder for n, f in folders.items()},
                                      dataset=spec.name, held=held, size=spec.size,
                                      fraction_given=options.held_out is not None, progress=say)
            if spec.classes is not None and read.classes != spec.classes:
                raise DataBuildError(f"image folder {folder} has classes ({', '.join(read.classes)}); "
                                     f"the spec declares ({', '.join(spec.classes)})")
            classes = read.classes
            arrays.update(read.splits)
            steps.append(read.source)
            note = read.note
        idx_images: list[np.ndarray] = []
        for split in spec.splits.values():
            if isinstance(split.source, Idx):
                say(f"{spec.name}: reading {split.name} from {split.source.images} in {folder}")
                images, labels = load_idx_pair(folder, split.source.images, split.source.labels,
                                               num_classes=len(classes), size=spec.size)
                count = _count(options, spec.name, split.name, split.source.count, drawn=False)
                arrays[split.name] = (images[:count, None], labels[:count])
                idx_images.append(images[:count])
                steps.append(f"{split.name}: IDX files {split.source.images}[.gz] and "
                             f"{split.source.labels}[.gz] from {folder}")
        if idx_images and spec.public_dir is not None:
            provenance, note = _idx_provenance(np.concatenate(idx_images), spec.public_dir, spec.name)
    for split in spec.splits.values():
        drawing = split.stand_in if drawn and split.stand_in else split.source
        if split.name not in arrays and isinstance(drawing, Synthetic):
            count = _count(options, spec.name, split.name, drawing.count, drawn=True)
            assert count is not None
            say(f"{spec.name}: drawing {count} synthetic {split.name} images ({classes_n} classes)")
            arrays[split.name] = synthetic.draw_images(drawing.style, count, seed_of(split.name),
                                                stream=drawing.stream, num_classes=classes_n)
            steps.append(f"{split.name}: drawn by grader.datasets.synthetic in style "
                         f"{drawing.style} (stream {drawing.stream})")

    def resolve(name: str) -> Arrays:
        if name not in arrays:
            source = spec.splits[name].source
            assert isinstance(source, Transform)
            images, labels = resolve(source.of)
            params = ", ".join(f"{k} {v:g}" for k, v in source.params.items())
            say(f"{spec.name}: {name} = {source.of} through '{source.transform}' "
                f"(seed {seed_of(name)}{', ' + params if params else ''})")
            arrays[name] = (apply_transform(source.transform, images, seed_of(name), source.params),
                            labels.copy())
            steps.append(f"{name} = {source.of} passed through the '{source.transform}' transform "
                         f"({TRANSFORMS[source.transform].describe}; seed {seed_of(name)}"
                         f"{', ' + params if params else ''})")
        return arrays[name]

    splits = {}
    for name in spec.splits:
        images, labels = resolve(name)
        splits[name] = _save_split(root, spec, name, images, labels, len(classes))
    say(f"{spec.name}: " + ", ".join(f"{s.name} {s.count}" for s in splits.values())
        + f" images, {provenance}")
    if drawn:
        note = synthetic.STAND_IN_NOTE.format(name=spec.name)
    suffix = {Provenance.PUBLIC: " (public)", Provenance.SYNTHETIC: " (synthetic stand-in)"}
    return DatasetInfo(
        name=spec.name,
        title=spec.title + suffix.get(provenance, ""),
        provenance=provenance,
        note=note,
        source="; ".join(steps),
        classes=classes,
        input_shape=(spec.channels, *spec.size),
        preprocessing=preprocessing_text(spec),
        splits=splits,
        dtype=spec.dtype,
    )


def stored_inputs(spec: DatasetSpec, images: np.ndarray) -> np.ndarray:
    """What is stored for uint8 ``images``: themselves, or, when the dataset is normalised,
    float32 ``(images / 255 - mean) / std`` per channel (ToTensor then Normalize)."""
    if spec.normalize is None:
        return np.ascontiguousarray(images)
    shape = (1, -1, 1, 1)
    mean = np.asarray(spec.normalize.mean, dtype=np.float32).reshape(shape)
    std = np.asarray(spec.normalize.std, dtype=np.float32).reshape(shape)
    return np.ascontiguousarray((images.astype(np.float32) / np.float32(255.0) - mean) / std)


def _save_split(
    root: Path, spec: DatasetSpec, split: str, images: np.ndarray, labels: np.ndarray, num_classes: int
) -> SplitInfo:
    inputs = root / INPUTS / spec.name / f"{split}.npy"
    label_path = root / LABELS / spec.name / f"{split}.npy"
    for path, array in ((inputs, stored_inputs(spec, images)), (label_path, labels)):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    counts = tuple(int(c) for c in np.bincount(labels, minlength=num_classes))
    return SplitInfo(split, len(labels), inputs, label_path, counts)


def preprocessing_text(spec: DatasetSpec) -> str:
    """The manifest's sentence on what is stored and what the model's input is."""
    height, width = spec.size
    colour = "grayscale" if spec.channels == 1 else "RGB"
    text = f"{colour} {height}x{width} images"
    if any(isinstance(s.source, ImageFolder) for s in spec.splits.values()):
        text = (f"{colour} images resized to {height}x{width} as torchvision.transforms.Resize(({height}, "
                 f"{width})) does on a PIL image (bilinear, antialias)")
    shape = f"(N, {spec.channels}, {height}, {width})"
    if spec.normalize is None:
        return (text + f", stored uint8 {shape}; the model input is the array / 255 (what "
                "transforms.ToTensor() gives), values in [0, 1], no normalisation")
    mean, std = (list(spec.normalize.mean), list(spec.normalize.std))
    return (text + f", stored float32 {shape} already normalised: (pixels / 255 - mean) / std "
            f"with mean {mean} and std {std} (what transforms.ToTensor() then "
            "transforms.Normalize(mean, std) give); the model input is the array as it is")


def _idx_provenance(images: np.ndarray, public_dir: Path, name: str) -> tuple[Provenance, str]:
    """Public when more than PUBLIC_SHARE_LIMIT of ``images`` are images of the public set in
    ``public_dir`` (their labels are anyone's), else private; and the note that says why."""
    known = public_image_count(images, public_dir)
    if known is None:
        return Provenance.PRIVATE, (
            f"Not compared with the public set ({public_dir} is not installed): "
            "make sure these images are your own."
        )
    share = f"{known:,} of its {len(images):,} images are images of the public set in {public_dir}"
    if known > PUBLIC_SHARE_LIMIT * len(images):
        return Provenance.PUBLIC, (
            f"{share}, whose labels anyone can have: a submission can carry them (inside a "
            "checkpoint, say) and score on them without classifying anything. For a course, "
            f"build from your own private set: `grader build-tests --source {name}=DIR`."
        )
    return Provenance.PRIVATE, f"{share}." if known else ""
