"""The ``[datasets.*]`` tables of an assignment spec: which hidden sets exist and how each
split is built. ``grader build-tests`` reads them; nothing in the builders names a split.

One dataset (``[datasets.<name>]``) has classes, an input size and one preprocessing for all
its splits; each split (``[datasets.<name>.splits.<SPLIT>]``) says where it comes from:

- ``from = "idx"``: a pair of IDX files (``images``, ``labels``) in the dataset's folder;
- ``from = "image_folder"``: one folder per class (``folder``, default the split's name), or
  a seeded ``held_out`` share of each class of a folder that holds the classes directly;
- ``from = "synthetic"``: drawn by :mod:`grader.datasets.synthetic` (``style``, ``stream``,
  ``count``);
- ``from = "transform"``: another split (``of``) through a named transform of
  :mod:`grader.datasets.transforms` with a ``seed`` and the transform's parameters.

A split from a folder may name a ``stand_in`` (a synthetic split) drawn when no folder is
given; transform splits then transform the stand-in, unless they name a stand-in of their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.datasets.synthetic import IMAGE_SIZE as SYNTHETIC_SIZE
from grader.datasets.synthetic import MAX_CLASSES, STYLES
from grader.datasets.transforms import TRANSFORMS
from grader.errors import SpecError
from grader.parts.spec import no_extra as _no_extra
from grader.parts.spec import take as _take

SOURCES = ("idx", "image_folder", "synthetic", "transform")
DEFAULT_SEED = 1234


@dataclass(frozen=True)
class Normalize:
    """``transforms.Normalize(mean, std)`` after ``ToTensor()``: one value per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Idx:
    images: str  # file name in the dataset's folder, read plain or with ".gz"
    labels: str
    count: int | None = None  # the first ``count`` images only (None: all)


@dataclass(frozen=True)
class ImageFolder:
    folder: str  # sub-folder of the dataset's folder (when it holds one folder per split)
    held_out: float | None = None  # share of each class held out into this split


@dataclass(frozen=True)
class Synthetic:
    style: str
    stream: int
    count: int


@dataclass(frozen=True)
class Transform:
    of: str
    transform: str
    params: Mapping[str, float] = field(default_factory=dict)


Source = Idx | ImageFolder | Synthetic | Transform


@dataclass(frozen=True)
class SplitSpec:
    """One hidden split: how it is built, its seed and the share shown on the public board."""

    name: str
    source: Source
    seed: int
    public_fraction: float | None  # None: the spec's [leaderboard] public_fraction
    stand_in: Synthetic | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """One hidden dataset: classes (None: the image folders' names), size and preprocessing."""

    name: str
    title: str
    classes: tuple[str, ...] | None
    size: tuple[int, int]
    channels: int
    normalize: Normalize | None
    folder: Path | None  # where its files are read unless the CLI names another folder
    public_dir: Path | None  # a public IDX set: images found there make the build public
    synthetic_classes: int
    splits: Mapping[str, SplitSpec]

    @property
    def dtype(self) -> str:
        """How inputs are stored: uint8 pixels, or float32 once normalised."""
        return "float32" if self.normalize else "uint8"

    def has_stand_in(self) -> bool:
        """Every split can be drawn without a folder (transforms follow what they transform)."""
        return all(
            s.stand_in is not None or isinstance(s.source, Synthetic | Transform)
            for s in self.splits.values()
            if not isinstance(s.source, Transform) or s.stand_in is not None
        )


# --------------------------------------------------------------------------- parsing


def _get(table: Mapping[str, Any], key: str, kind: type, where: str, default: Any) -> Any:
    return _take(table, key, kind, where) if key in table else default


def _whole(table: Mapping[str, Any], key: str, where: str, default: int | None, low: int) -> Any:
    value = _get(table, key, int, where, default)
    if value is not None and value < low:
        raise SpecError(f"{where}: key '{key}' must be at least {low}, got {value}")
    return value


def _share(value: float, key: str, where: str, *, closed: bool) -> float:
    if not (0.0 < value <= 1.0 if closed else 0.0 < value < 1.0):
        raise SpecError(f"{where}: key '{key}' must lie in (0, {'1]' if closed else '1)'}, got {value}")
    return value


def _numbers(table: Mapping[str, Any], key: str, where: str) -> tuple[float, ...]:
    values = _take(table, key, list, where)
    if not values or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        raise SpecError(f"{where}: key '{key}' must be a list of numbers, got {values!r}")
    return tuple(float(v) for v in values)


def _synthetic(table: Mapping[str, Any], where: str) -> Synthetic:
    _no_extra(table, {"from", "style", "stream", "count"}, where)
    if table.get("from", "synthetic") != "synthetic":
        raise SpecError(f"{where}: a stand-in is drawn; key 'from' can only be \"synthetic\"")
    style = _take(table, "style", str, where)
    if style not in STYLES:
        raise SpecError(f"{where}: unknown style {style!r} (known: {', '.join(STYLES)})")
    return Synthetic(style, _whole(table, "stream", where, 0, 0), _whole(table, "count", where, 500, 1))


def _transform(table: Mapping[str, Any], where: str) -> Transform:
    name = _take(table, "transform", str, where)
    if name not in TRANSFORMS:
        raise SpecError(f"{where}: unknown transform {name!r} (known: {', '.join(TRANSFORMS)})")
    allowed = TRANSFORMS[name].params
    common = {"from", "of", "transform", "seed", "stand_in", "public_fraction"}
    _no_extra(table, common | set(allowed), where)
    params = {k: float(_take(table, k, float, where)) for k in allowed if k in table}
    missing = [k for k, default in allowed.items() if default is None and k not in params]
    if missing:
        raise SpecError(f"{where}: missing key '{missing[0]}' (a parameter of '{name}')")
    return Transform(_take(table, "of", str, where), name, params)


def _source(table: Mapping[str, Any], name: str, where: str) -> Source:
    kind = _take(table, "from", str, where)
    common = {"from", "seed", "stand_in", "public_fraction"}
    if kind == "idx":
        _no_extra(table, common | {"images", "labels", "count"}, where)
        return Idx(_take(table, "images", str, where), _take(table, "labels", str, where),
                   _whole(table, "count", where, None, 1))
    if kind == "image_folder":
        _no_extra(table, common | {"folder", "held_out"}, where)
        held = _get(table, "held_out", float, where, None)
        if held is not None:
            _share(held, "held_out", where, closed=False)
        return ImageFolder(_get(table, "folder", str, where, name), held)
    if kind == "synthetic":
        if "stand_in" in table:
            raise SpecError(f"{where}: a synthetic split needs no 'stand_in'")
        return _synthetic({k: v for k, v in table.items() if k not in common - {"from"}}, where)
    if kind == "transform":
        return _transform(table, where)
    raise SpecError(f"{where}: key 'from' must be one of {', '.join(SOURCES)}, got {kind!r}")


def _split(name: str, table: Any, seed: int, public: float, where: str) -> SplitSpec:
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    source = _source(table, name, where)
    stand_in = None
    if "stand_in" in table:
        if isinstance(source, Idx):
            raise SpecError(f"{where}: a stand-in draws RGB images; an IDX split cannot have one")
        stand_in = _synthetic(_take(table, "stand_in", dict, where), f"{where}.stand_in")
    fraction = _share(_get(table, "public_fraction", float, where, public), "public_fraction",
                      where, closed=True) if "public_fraction" in table else None
    return SplitSpec(name, source, _whole(table, "seed", where, seed, 0), fraction, stand_in)


def _channels(splits: Mapping[str, SplitSpec], where: str) -> int:
    kinds = {type(s.source) for s in splits.values()} - {Transform}
    channels = {1 if kind is Idx else 3 for kind in kinds}
    if len(channels) > 1:
        raise SpecError(f"{where}: IDX splits (grayscale) and image splits (RGB) cannot share a dataset")
    return channels.pop() if channels else 3


def _check_transforms(splits: Mapping[str, SplitSpec], name: str) -> None:
    for split in splits.values():
        seen = [split.name]
        source = split.source
        while isinstance(source, Transform):
            if source.of not in splits:
                raise SpecError(f"[datasets.{name}.splits.{seen[-1]}]: key 'of' names no split of this "
                                f"dataset: {source.of!r} (known: {', '.join(splits)})")
            if source.of in seen:
                raise SpecError(f"[datasets.{name}.splits.{split.name}]: transforms go round in a circle "
                                f"({' <- '.join([*seen, source.of])})")
            seen.append(source.of)
            source = splits[source.of].source


def _check_folders(splits: Mapping[str, SplitSpec], where: str) -> None:
    folders = {s.name: s.source for s in splits.values() if isinstance(s.source, ImageFolder)}
    held = [name for name, source in folders.items() if source.held_out is not None]
    if len(held) > 1:
        raise SpecError(f"{where}: only one image-folder split can be 'held_out' "
                        f"({', '.join(held)} are)")
    if held and len(folders) != 2:
        raise SpecError(f"{where}.splits.{held[0]}: 'held_out' needs exactly one other "
                        "image-folder split to take the rest")
    streams = [(s.stand_in or s.source) for s in splits.values()]
    drawn = [(x.style, x.stream) for x in streams if isinstance(x, Synthetic)]
    if len(set(drawn)) != len(drawn):
        raise SpecError(f"{where}: two synthetic splits share a style and a 'stream' (they would "
                        "be the same images); give each its own stream")


def _dataset(name: str, table: Any, public: float) -> DatasetSpec:
    where = f"[datasets.{name}]"
    if not isinstance(table, dict):
        raise SpecError(f"{where}: must be a table")
    _no_extra(table, {"title", "classes", "size", "normalize", "dir", "public_dir", "seed",
                      "synthetic_classes", "splits"}, where)
    classes = _get(table, "classes", list, where, None)
    if classes is not None and (len(classes) < 2 or not all(isinstance(c, str) for c in classes)):
        raise SpecError(f"{where}: key 'classes' must list at least 2 class names")
    size = _take(table, "size", list, where)
    if len(size) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in size):
        raise SpecError(f"{where}: key 'size' must be [height, width] in pixels, got {size!r}")
    seed = _whole(table, "seed", where, DEFAULT_SEED, 0)
    raw_splits = _take(table, "splits", dict, where)
    if not raw_splits:
        raise SpecError(f"{where}: needs at least one split under [datasets.{name}.splits.*]")
    splits = {s: _split(s, t, seed, public, f"[datasets.{name}.splits.{s}]")
              for s, t in raw_splits.items()}
    _check_transforms(splits, name)
    _check_folders(splits, where)
    channels = _channels(splits, where)
    normalize = None
    if "normalize" in table:
        norm = _take(table, "normalize", dict, where)
        _no_extra(norm, {"mean", "std"}, f"{where}.normalize")
        mean, std = _numbers(norm, "mean", f"{where}.normalize"), _numbers(norm, "std", f"{where}.normalize")
        if len(mean) != channels or len(std) != channels:
            raise SpecError(f"{where}.normalize: 'mean' and 'std' need one value per channel ({channels})")
        if min(std) <= 0:
            raise SpecError(f"{where}.normalize: every 'std' must be positive")
        normalize = Normalize(mean, std)
    uses_synthetic = any(isinstance(s.stand_in or s.source, Synthetic) for s in splits.values())
    if uses_synthetic and tuple(size) != (SYNTHETIC_SIZE, SYNTHETIC_SIZE):
        raise SpecError(f"{where}: synthetic images are {SYNTHETIC_SIZE}x{SYNTHETIC_SIZE}; "
                        f"key 'size' must be [{SYNTHETIC_SIZE}, {SYNTHETIC_SIZE}]")
    if any(isinstance(s.source, Idx) for s in splits.values()) and classes is None:
        raise SpecError(f"{where}: IDX splits need key 'classes' (their labels are numbers)")
    folder = _get(table, "dir", str, where, None)
    public_dir = _get(table, "public_dir", str, where, None)
    return DatasetSpec(
        name=name,
        title=_get(table, "title", str, where, name),
        classes=tuple(classes) if classes is not None else None,
        size=(size[0], size[1]),
        channels=channels,
        normalize=normalize,
        folder=Path(folder) if folder else None,
        public_dir=Path(public_dir) if public_dir else None,
        synthetic_classes=_whole(table, "synthetic_classes", where, 2, 2),
        splits=splits,
    )


def parse_datasets(raw: Any, *, public_fraction: float = 1.0) -> dict[str, DatasetSpec]:
    """The ``[datasets]`` table of a spec; ``public_fraction`` is the default of each split."""
    if not isinstance(raw, dict):
        raise SpecError("[datasets]: must be a table of [datasets.<name>] tables")
    datasets = {name: _dataset(name, table, public_fraction) for name, table in raw.items()}
    for dataset in datasets.values():
        if dataset.synthetic_classes > MAX_CLASSES:
            raise SpecError(f"[datasets.{dataset.name}]: key 'synthetic_classes' must be at most "
                            f"{MAX_CLASSES}")
    return datasets
