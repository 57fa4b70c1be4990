"""Plain keyword factories for tests: real files built under a test's tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import io
import struct
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

PUBLIC_FASHION = Path("/usr/share/datasets/fashion-mnist")


_BIG = 1 << 20
_DEFLATED: dict[tuple[tuple[str, str], ...], bytes] = {}  # big entries' names and digests -> zip


def make_zip(
    path: Path,
    files: Mapping[str, bytes] | Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a zip at ``path`` holding ``files`` (name or ZipInfo -> bytes, in order); return it.

    Deflating a 45 MB checkpoint takes seconds, and hundreds of tests zip the same two: entries
    of 1 MiB or more are deflated once per process (into a zip of their own, kept in memory) and
    the rest appended to a copy of it, so they come first in the zip.
    """
    items = list(files.items() if isinstance(files, Mapping) else files)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [name for name, _ in items]
    big = [(n, d) for n, d in items if isinstance(n, str) and len(d) >= _BIG]
    if big and compression == zipfile.ZIP_DEFLATED and len(set(names)) == len(names) \
            and all(isinstance(n, str) for n in names):
        key = tuple((n, hashlib.sha256(d).hexdigest()) for n, d in big)
        if key not in _DEFLATED:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", compression) as zf:
                for name, data in big:
                    zf.writestr(name, data)
            while len(_DEFLATED) >= 4:  # a few sets of checkpoints at a time, not every variant
                del _DEFLATED[next(iter(_DEFLATED))]
            _DEFLATED[key] = buffer.getvalue()
        path.write_bytes(_DEFLATED[key])
        with zipfile.ZipFile(path, "a", compression) as zf:
            for name, data in items:
                if len(data) < _BIG:
                    zf.writestr(name, data)
        return path
    with warnings.catch_warnings():
        # Some tests want duplicate names on purpose; zipfile warns about them.
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return path


def write_idx(path: Path, array: np.ndarray, code: int = 0x08, *, compress: bool = False) -> Path:
    """``array`` as an IDX file (magic 0x0000 <code> <ndim>, big-endian sizes), gzipped or not."""
    big = array.astype(array.dtype.newbyteorder(">"))
    data = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data += big.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def public_fashion_test() -> tuple[np.ndarray, np.ndarray]:
    """The public t10k images (N, 28, 28) and labels, parsed here without grader code."""
    with gzip.open(PUBLIC_FASHION / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(PUBLIC_FASHION / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8)
    return images, labels


def private_fashion_set(
    folder: Path, *, n: int = 500, seed: int = 5, mirror: bool = True, public: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """An instructor's own FashionMNIST-format test set in ``folder`` (gzipped t10k IDX files).

    Made from a shuffled slice of the real t10k images, mirrored left to right so that no image
    is byte for byte a public one (as with the instructor's own photos), except the first
    ``public`` images, left as they are. ``mirror=False`` keeps all of them public.
    Returns the images (N, 28, 28) and labels as written.
    """
    images, labels = public_fashion_test()
    order = np.random.default_rng(seed).permutation(len(images))[:n]
    x, y = images[order].copy(), labels[order].copy()
    if mirror:
        x[public:] = x[public:, :, ::-1]
    write_idx(folder / "t10k-images-idx3-ubyte.gz", x, compress=True)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y, compress=True)
    return x, y


LAB_DIR = Path(__file__).resolve().parent.parent / "hidden_tests" / "cnn"


def write_spec(folder: Path, text: str) -> Path:
    """``text`` as ``folder/assignment.toml``, with the lab's own files beside it (its layer
    tests and probes, its demo recipe) as a spec copied out of hidden_tests/cnn needs them."""
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for source in LAB_DIR.glob("*.py"):
        shutil.copyfile(source, folder / source.name)
    (folder / "assignment.toml").write_text(text)
    return folder


# The cnn spec's synthetic stand-ins (hidden_tests/cnn/assignment.toml), by split, and the
# stream the kit trains on: (style, stream).
CNN_SYNTHETIC = {"train": ("plain", 11), "ORIG": ("plain", 23), "AUG": ("augmented", 37),
                 "NEW": ("shifted", 53)}


def make_split(split: str, n: int, seed: int, num_classes: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic images the cnn spec draws for ``split`` (or the kit's "train" images)."""
    from grader.datasets.synthetic import draw_images

    style, stream = CNN_SYNTHETIC[split]
    return draw_images(style, n, seed, stream=stream, num_classes=num_classes)


def build_hidden_data(
    out: Path,
    *,
    fashion_dir: Path | None = PUBLIC_FASHION,
    dogs_cats_dir: Path | None = None,
    synthetic_counts: Mapping[str, int] | None = None,
    seed: int = 1234,
    num_classes: int = 2,
    new_fraction: float | None = None,
    progress=None,
):
    """The cnn spec's hidden sets through the generic builder, as `grader build-tests cnn`
    with --source fashion_mnist=DIR (None: not built), --source dogs_cats=DIR, --count, ..."""
    from grader.config import load_assignment
    from grader.datasets.build import build_sets

    sources: dict[str, Path] = {}
    if fashion_dir is not None and Path(fashion_dir) != PUBLIC_FASHION:
        sources["fashion_mnist"] = Path(fashion_dir)
    if dogs_cats_dir is not None:
        sources["dogs_cats"] = Path(dogs_cats_dir)
    return build_sets(
        load_assignment().datasets, out, sources=sources, counts=synthetic_counts, seed=seed,
        synthetic_classes=num_classes, held_out=new_fraction,
        only=None if fashion_dir is not None else ["dogs_cats"], progress=progress,
    )
