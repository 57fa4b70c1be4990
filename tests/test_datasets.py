"""The hidden test-set builder: IDX, FashionMNIST, synthetic data, folders, manifest, CLI."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from grader.datasets import synthetic
from grader.datasets.augment import augment
from grader.datasets.cli import build_tests, parse_counts
from grader.datasets.errors import DataBuildError
from grader.datasets.fashion import (
    DEFAULT_FASHION_DIR,
    FASHION_CLASSES,
    load_fashion_test,
    load_fashion_train,
)
from grader.datasets.idx import read_idx
from grader.datasets.imagefolder import load_image_folder, write_image_folder
from grader.datasets.manifest import NOT_BUILT, load_labels, load_manifest, sha256_file
from grader.datasets.provenance import Provenance
from grader.errors import GraderFault, SpecError
from tests.factories import CNN_SYNTHETIC, build_hidden_data, make_split, write_idx

SMALL = {"ORIG": 30, "AUG": 20, "NEW": 20}

needs_fashion = pytest.mark.skipif(
    not (DEFAULT_FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def parse_idx_gz(path: Path, header: int) -> np.ndarray:
    """An independent IDX parse: skip the header, read the bytes."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def image_tree(root: Path, classes: tuple[str, ...], per_class: int = 3) -> Path:
    """ROOT/ORIG and ROOT/NEW with PNG/JPEG images of many sizes and modes."""
    rng = np.random.default_rng(0)
    sizes = [(37, 53), (200, 120), (96, 96), (13, 300), (640, 480)]
    for split in ("ORIG", "NEW"):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[(i + c) % len(sizes)]
                ramp = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
                noise = rng.integers(0, 60, size=(h, w, 3))
                pixels = np.clip(ramp * (c + 1) / len(classes) + noise, 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                kind = (i + c) % 4
                if kind == 0:
                    image.save(folder / f"img{i}.png")
                elif kind == 1:
                    image.save(folder / f"img{i}.JPG", quality=90)
                elif kind == 2:
                    image.convert("L").save(folder / f"img{i}.png")
                else:
                    image.convert("RGBA").save(folder / f"img{i}.png")
            (folder / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full build (real FashionMNIST, small synthetic dogs and cats), made once."""
    out = tmp_path_factory.mktemp("built") / "cnn"
    build_hidden_data(out, synthetic_counts=SMALL, seed=7)
    return out


@pytest.fixture
def copy_of_built(built: Path, tmp_path: Path) -> Path:
    """A private copy of the built set that a test may damage."""
    return Path(shutil.copytree(built, tmp_path / "cnn"))


# --------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_plain_and_gzipped(tmp_path: Path, compress: bool) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    ints = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", images, compress=compress)), images)
    read = read_idx(write_idx(tmp_path / "b", ints, code=0x0C, compress=compress))
    assert read.dtype == np.int32
    assert read.dtype.isnative
    assert np.array_equal(read, ints)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\x00\x00", "header"),
        (b"\x01\x02\x08\x01" + struct.pack(">I", 1) + b"\x00", "magic"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "type code"),
        (b"\x00\x00\x08\x00", "dimensions"),
        (b"\x00\x00\x08\x02" + struct.pack(">I", 2), "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 4) + b"\x00" * 3, "truncated"),
        (b"\x00\x00\x08\x01" + struct.pack(">I", 2) + b"\x00" * 3, "after the data"),
        (b"\x1f\x8b\x08\x00garbage", "gzip"),
    ],
)
def test_read_idx_refuses_bad_files(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(DataBuildError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, SpecError)
    assert isinstance(info.value, ValueError)


# --------------------------------------------------------------------------- FashionMNIST


@needs_fashion
def test_fashion_test_split_matches_an_independent_parse() -> None:
    images, labels = load_fashion_test(DEFAULT_FASHION_DIR)
    raw_images = parse_idx_gz(DEFAULT_FASHION_DIR / "t10k-images-idx3-ubyte.gz", 16)
    raw_labels = parse_idx_gz(DEFAULT_FASHION_DIR / "t10k-labels-idx1-ubyte.gz", 8)
    assert images.shape == (10_000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int64
    assert np.array_equal(images.reshape(-1), raw_images)
    assert np.array_equal(labels, raw_labels)
    assert np.bincount(labels).tolist() == [1000] * 10


@needs_fashion
def test_fashion_train_split_for_training() -> None:
    images, labels = load_fashion_train(DEFAULT_FASHION_DIR)
    assert images.shape == (60_000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (60_000,)
    assert labels.dtype == np.int64
    assert set(np.unique(labels)) == set(range(10))


def test_fashion_missing_folder_says_what_it_needs(tmp_path: Path) -> None:
    with pytest.raises(DataBuildError, match=r"nowhere does not exist; a FashionMNIST-format set"):
        load_fashion_test(tmp_path / "nowhere")
    with pytest.raises(DataBuildError, match=r"t10k-images-idx3-ubyte\[\.gz\] not found"):
        load_fashion_test(tmp_path)


def test_fashion_label_count_mismatch_is_refused(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8), compress=True)
    with pytest.raises(DataBuildError, match="2 labels for 3 images"):
        load_fashion_test(tmp_path)


@needs_fashion
def test_build_writes_real_fashion_mnist(built: Path) -> None:
    manifest = load_manifest(built)
    info = manifest.datasets["fashion_mnist"]
    split = info.splits["test"]
    assert info.classes == FASHION_CLASSES
    assert info.provenance is Provenance.PUBLIC  # Debian's t10k files: anyone has the labels
    assert info.title == "FashionMNIST test set (public)"
    assert "10,000 of its 10,000 images are images of the public set" in info.note
    assert "--source fashion_mnist=DIR" in info.note
    assert info.input_shape == (1, 28, 28)
    assert split.count == 10_000
    assert split.inputs == built / "inputs" / "fashion_mnist" / "test.npy"
    images = np.load(split.inputs, allow_pickle=False)
    labels = load_labels(split)
    assert images.shape == (10_000, 1, 28, 28)
    assert images.dtype == np.uint8
    raw_images = parse_idx_gz(DEFAULT_FASHION_DIR / "t10k-images-idx3-ubyte.gz", 16)
    raw_labels = parse_idx_gz(DEFAULT_FASHION_DIR / "t10k-labels-idx1-ubyte.gz", 8)
    assert np.array_equal(images.reshape(-1), raw_images)
    assert labels.dtype == np.int64
    assert np.array_equal(labels, raw_labels)
    assert split.class_counts == (1000,) * 10


# --------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("split", sorted(CNN_SYNTHETIC))
def test_synthetic_split_shapes_and_balance(split: str) -> None:
    images, labels = make_split(split, 25, seed=3)
    assert images.shape == (25, 3, 96, 96)
    assert images.dtype == np.uint8
    assert labels.shape == (25,)
    assert labels.dtype == np.int64
    assert sorted(np.bincount(labels).tolist()) == [12, 13]
    assert images.std() > 20  # not blank


def test_synthetic_is_deterministic() -> None:
    for split in ("ORIG", "AUG", "NEW"):
        a, la = make_split(split, 12, seed=5)
        b, lb = make_split(split, 12, seed=5)
        assert a.tobytes() == b.tobytes()
        assert la.tobytes() == lb.tobytes()
    other, _ = make_split("ORIG", 12, seed=6)
    train, _ = make_split("train", 12, seed=5)
    orig, _ = make_split("ORIG", 12, seed=5)
    assert not np.array_equal(other, orig)
    assert not np.array_equal(train, orig)


def test_synthetic_breeds_for_more_classes() -> None:
    names = synthetic.class_names(5)
    assert len(names) == 5
    assert list(names) == sorted(names)
    assert {n.split("_")[0] for n in names} == {"cat", "dog"}
    images, labels = make_split("ORIG", 30, seed=1, num_classes=5)
    assert images.shape == (30, 3, 96, 96)
    assert np.bincount(labels).tolist() == [6] * 5
    assert synthetic.class_names(2) == ("cat", "dog")
    for bad in (1, synthetic.MAX_CLASSES + 1):
        with pytest.raises(ValueError, match="num_classes"):
            make_split("ORIG", 4, seed=1, num_classes=bad)
    with pytest.raises(ValueError, match="unknown style"):
        synthetic.draw_images("sepia", 4, seed=1)


def test_new_split_has_shifted_pixel_statistics() -> None:
    def saturation(images: np.ndarray) -> float:
        x = images.astype(np.float32) / 255
        return float((x.max(axis=1) - x.min(axis=1)).mean())

    train = saturation(make_split("train", 120, seed=2)[0])
    orig = saturation(make_split("ORIG", 120, seed=2)[0])
    new = saturation(make_split("NEW", 120, seed=2)[0])
    assert abs(train - orig) < 0.15 * orig  # same distribution
    assert new > 1.5 * orig  # other palettes and backgrounds


def test_augment_is_deterministic_per_image_and_changes_every_image() -> None:
    images, _ = make_split("ORIG", 16, seed=4)
    aug = augment(images, seed=9)
    assert aug.shape == images.shape
    assert aug.dtype == np.uint8
    assert augment(images, seed=9).tobytes() == aug.tobytes()
    assert np.array_equal(augment(images[:5], seed=9), aug[:5])  # independent of the batch
    assert not np.array_equal(augment(images, seed=10), aug)
    diff = np.abs(aug.astype(np.int16) - images.astype(np.int16)).mean(axis=(1, 2, 3))
    assert (diff > 2).all()
    with pytest.raises(ValueError, match="uint8"):
        augment(images.astype(np.float32), seed=1)


# --------------------------------------------------------------------------- image folders


def _torchvision_reference(path: Path) -> np.ndarray:
    from torchvision import transforms

    to_tensor = transforms.Compose([transforms.Resize((96, 96)), transforms.ToTensor()])
    with Image.open(path) as image:
        return to_tensor(image.convert("RGB")).numpy()


@pytest.mark.parametrize("classes", [("cat", "dog"), ("beagle", "persian", "siamese")])
def test_image_folder_matches_torchvision_resize(tmp_path: Path, classes: tuple[str, ...]) -> None:
    root = image_tree(tmp_path / "dc", classes)
    images, labels, found = load_image_folder(root / "ORIG")
    assert found == classes
    assert images.shape == (3 * len(classes), 3, 96, 96)
    assert images.dtype == np.uint8
    assert labels.tolist() == [c for c in range(len(classes)) for _ in range(3)]
    paths = sorted((root / "ORIG").rglob("img*"), key=lambda p: (p.parent.name, p.name))
    assert len(paths) == len(images)
    for path, ours in zip(paths, images, strict=True):
        reference = _torchvision_reference(path)
        assert np.abs(ours / 255.0 - reference).max() <= 1 / 255 + 1e-6, path


@pytest.mark.parametrize("classes", [("cat", "dog"), ("beagle", "persian", "siamese")])
def test_build_from_image_folders(tmp_path: Path, classes: tuple[str, ...]) -> None:
    root = image_tree(tmp_path / "dc", classes, per_class=4)
    manifest = build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root, seed=11)
    info = manifest.datasets["dogs_cats"]
    assert set(manifest.datasets) == {"dogs_cats"}
    assert info.provenance is Provenance.PRIVATE
    assert info.classes == classes
    assert info.input_shape == (3, 96, 96)
    orig, aug = info.splits["ORIG"], info.splits["AUG"]
    assert orig.count == aug.count == info.splits["NEW"].count == 4 * len(classes)
    assert orig.class_counts == (4,) * len(classes)
    assert np.array_equal(load_labels(orig), load_labels(aug))
    orig_x = np.load(orig.inputs, allow_pickle=False)
    aug_x = np.load(aug.inputs, allow_pickle=False)
    assert np.array_equal(augment(orig_x, seed=11), aug_x)
    assert all(not np.array_equal(a, b) for a, b in zip(orig_x, aug_x, strict=True))


def test_image_folder_errors_name_the_problem(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "dc", ("cat", "dog"))
    shutil.rmtree(root / "NEW" / "dog")
    (root / "NEW" / "wolf").mkdir()
    with pytest.raises(DataBuildError, match=r"NEW has classes \(cat, wolf\).*\(cat, dog\)"):
        build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root)
    shutil.rmtree(root / "NEW")
    with pytest.raises(DataBuildError, match="no NEW/ folder"):
        build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root)
    broken = root / "ORIG" / "cat" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is not a JPEG")
    with pytest.raises(DataBuildError, match=r"cannot read image .*broken\.jpg"):
        load_image_folder(root / "ORIG")
    (root / "ORIG" / "empty").mkdir()
    broken.unlink()
    with pytest.raises(DataBuildError, match="empty holds no images"):
        load_image_folder(root / "ORIG")
    assert not (tmp_path / "out").exists()


def class_tree(root: Path, classes: tuple[str, ...], per_class: int) -> Path:
    """ROOT/<class>/*: the course's one-folder-per-class layout (no ORIG/ or NEW/)."""
    image_tree(root / "made", classes, per_class)
    shutil.move(root / "made" / "ORIG", root / "photos")
    shutil.rmtree(root / "made")
    return root / "photos"


def _rows(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


@pytest.mark.parametrize("classes", [("cat", "dog"), ("beagle", "persian", "siamese")])
def test_build_from_one_folder_per_class(tmp_path: Path, classes: tuple[str, ...]) -> None:
    root = class_tree(tmp_path, classes, per_class=10)
    said: list[str] = []
    manifest = build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root, seed=11,
                                 progress=said.append)
    info = manifest.datasets["dogs_cats"]
    assert info.classes == classes
    assert info.provenance == "private"
    orig, aug, new = (info.splits[s] for s in ("ORIG", "AUG", "NEW"))
    # 20 % of each class held out as NEW, the rest ORIG; AUG is ORIG augmented.
    assert new.class_counts == (2,) * len(classes)
    assert orig.class_counts == aug.class_counts == (8,) * len(classes)
    orig_x, new_x = (np.load(s.inputs, allow_pickle=False) for s in (orig, new))
    assert np.array_equal(np.load(aug.inputs, allow_pickle=False), augment(orig_x, seed=11))
    every, labels, _ = load_image_folder(root)
    assert _rows(np.concatenate([orig_x, new_x])) == _rows(every)  # each photo in one split
    assert sorted(load_labels(new).tolist() + load_labels(orig).tolist()) == sorted(labels.tolist())
    # The layout is named while building and in the manifest, with what NEW means here.
    assert any("one folder per class" in line and "seed 11" in line for line in said)
    assert "one image folder per class" in info.source
    assert "20% held out as NEW" in info.source
    assert "not newly collected" in info.note

    # The same seed holds out the same photos; another seed, others; the fraction is settable.
    again = build_hidden_data(tmp_path / "again", fashion_dir=None, dogs_cats_dir=root, seed=11)
    assert np.array_equal(np.load(again.datasets["dogs_cats"].splits["NEW"].inputs), new_x)
    other = build_hidden_data(tmp_path / "other", fashion_dir=None, dogs_cats_dir=root, seed=12)
    assert _rows(np.load(other.datasets["dogs_cats"].splits["NEW"].inputs)) != _rows(new_x)
    half = build_hidden_data(tmp_path / "half", fashion_dir=None, dogs_cats_dir=root, seed=11,
                             new_fraction=0.5)
    assert half.datasets["dogs_cats"].splits["NEW"].class_counts == (5,) * len(classes)


def test_split_layout_is_named_too(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "dc", ("cat", "dog"))
    said: list[str] = []
    info = build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root,
                             progress=said.append).datasets["dogs_cats"]
    assert any("has ORIG/ and NEW/ folders" in line for line in said)
    assert f"image folders {root}/ORIG and {root}/NEW" in info.source
    assert info.note == ""
    with pytest.raises(DataBuildError, match="held-out fraction only applies to one folder per class"):
        build_hidden_data(tmp_path / "out2", fashion_dir=None, dogs_cats_dir=root, new_fraction=0.3)


def _mixed(t: Path) -> Path:
    root = image_tree(t / "dc", ("cat", "dog"))
    shutil.copytree(root / "ORIG" / "cat", root / "cat")
    return root


def _empty(t: Path) -> Path:
    (t / "dc").mkdir()
    return t / "dc"


def _loose_images(t: Path) -> Path:
    root = _empty(t)
    Image.new("RGB", (8, 8)).save(root / "a.png")
    return root


def _orig_without_new(t: Path) -> Path:
    root = image_tree(t / "dc", ("cat", "dog"))
    shutil.rmtree(root / "NEW")
    return root


BAD_LAYOUTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "mixed": (_mixed, r"mixes two layouts: NEW/, ORIG/ beside cat/"),
    "empty": (_empty, r"holds no folders; expected either ORIG/<class>/"),
    "loose images": (_loose_images, "holds images but no class folders"),
    "one image per class": (lambda t: class_tree(t, ("cat", "dog"), per_class=1),
                            r"at least 2 images per class .* cat \(1\), dog \(1\)"),
    "one class": (lambda t: class_tree(t, ("cat",), per_class=3), "needs at least 2 class folders"),
    "ORIG without NEW": (_orig_without_new, "no NEW/ folder"),
}


@pytest.mark.parametrize("layout", sorted(BAD_LAYOUTS))
def test_dogs_cats_layout_errors_name_the_problem(tmp_path: Path, layout: str) -> None:
    make, problem = BAD_LAYOUTS[layout]
    root = make(tmp_path)
    with pytest.raises(DataBuildError, match=problem):
        build_hidden_data(tmp_path / "out", fashion_dir=None, dogs_cats_dir=root)
    assert not (tmp_path / "out").exists()


def test_write_image_folder_round_trips_the_synthetic_split(tmp_path: Path) -> None:
    classes = write_image_folder(tmp_path / "train", n=12, seed=8, num_classes=3, stream=23)
    assert classes == synthetic.class_names(3)
    assert len(list((tmp_path / "train").rglob("*.png"))) == 12
    images, labels, found = load_image_folder(tmp_path / "train")
    expected, expected_labels = make_split("ORIG", 12, seed=8, num_classes=3)
    order = np.argsort(expected_labels, kind="stable")
    assert found == classes
    assert np.array_equal(labels, expected_labels[order])
    assert np.array_equal(images, expected[order])


# --------------------------------------------------------------------------- build + manifest


def test_build_writes_the_documented_layout(built: Path) -> None:
    manifest = load_manifest(built)
    raw = json.loads((built / "manifest.json").read_text())
    assert raw["format"] == 3
    assert raw["datasets"]["dogs_cats"]["dtype"] == "uint8"
    assert raw["datasets"]["dogs_cats"]["provenance"] == "synthetic"
    assert "synthetic" not in raw["datasets"]["dogs_cats"]  # one notion, not two flags
    assert raw["built_at"] == manifest.built_at
    assert manifest.inputs_dir == built / "inputs"
    dogs = manifest.dataset("dogs_cats")
    assert dogs.provenance is Provenance.SYNTHETIC
    assert "synthetic stand-in" in dogs.note
    assert "not real photos" in dogs.note
    assert dogs.classes == ("cat", "dog")
    assert dogs.input_shape == (3, 96, 96)
    assert "Resize((96, 96))" in dogs.preprocessing
    for name, count in SMALL.items():
        split = dogs.splits[name]
        assert split.count == count
        assert sum(split.class_counts) == count
        assert manifest.input_relpath(split) == f"dogs_cats/{name}.npy"
        assert split.labels == built / "labels" / "dogs_cats" / f"{name}.npy"
        images, labels = make_split(name, count, seed=7)
        assert np.array_equal(np.load(split.inputs, allow_pickle=False), images)
        assert np.array_equal(load_labels(split), labels)
    inputs = sorted(p.relative_to(built).as_posix() for p in (built / "inputs").rglob("*"))
    assert inputs == [
        "inputs/dogs_cats",
        "inputs/dogs_cats/AUG.npy",
        "inputs/dogs_cats/NEW.npy",
        "inputs/dogs_cats/ORIG.npy",
        "inputs/fashion_mnist",
        "inputs/fashion_mnist/test.npy",
    ]
    for rel, digest in manifest.files.items():
        assert sha256_file(built / rel) == digest
    assert len(manifest.files) == 8
    leftovers = [p.name for p in built.parent.iterdir() if p.name != "cnn"]
    assert leftovers == []
    with pytest.raises(GraderFault, match="no dataset 'cifar'"):
        manifest.dataset("cifar")


def test_not_built_is_a_grader_fault(tmp_path: Path) -> None:
    with pytest.raises(GraderFault) as info:
        load_manifest(tmp_path / "missing")
    assert info.value.message == NOT_BUILT
    assert "manifest.json" in info.value.detail
    (tmp_path / "empty").mkdir()
    with pytest.raises(GraderFault, match="not built"):
        load_manifest(tmp_path / "empty")


def test_verify_catches_a_modified_input(copy_of_built: Path) -> None:
    target = copy_of_built / "inputs" / "dogs_cats" / "ORIG.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    load_manifest(copy_of_built, verify=False)  # no hashing without verify
    with pytest.raises(GraderFault, match=r"inputs/dogs_cats/ORIG\.npy: its SHA-256"):
        load_manifest(copy_of_built)


def test_verify_catches_a_removed_file(copy_of_built: Path) -> None:
    (copy_of_built / "labels" / "dogs_cats" / "NEW.npy").unlink()
    with pytest.raises(GraderFault, match=r"labels/dogs_cats/NEW\.npy: missing"):
        load_manifest(copy_of_built)


@pytest.mark.parametrize("name", ["notes.txt", "dogs_cats/ORIG_labels.npy", ".hidden"])
def test_verify_refuses_extra_files_under_inputs(copy_of_built: Path, name: str) -> None:
    extra = copy_of_built / "inputs" / name
    if name.endswith("labels.npy"):
        shutil.copy(copy_of_built / "labels" / "dogs_cats" / "ORIG.npy", extra)
    else:
        extra.write_text("x")
    with pytest.raises(GraderFault, match=rf"inputs/{re.escape(name)}: unexpected file"):
        load_manifest(copy_of_built)


def test_verify_refuses_a_symlink_under_inputs(copy_of_built: Path) -> None:
    (copy_of_built / "inputs" / "answers").symlink_to(copy_of_built / "labels")
    with pytest.raises(GraderFault, match="inputs/answers: unexpected symbolic link"):
        load_manifest(copy_of_built)


def test_verify_refuses_labels_listed_under_inputs(copy_of_built: Path) -> None:
    moved = copy_of_built / "inputs" / "dogs_cats" / "ORIG_labels.npy"
    shutil.move(copy_of_built / "labels" / "dogs_cats" / "ORIG.npy", moved)
    path = copy_of_built / "manifest.json"
    raw = json.loads(path.read_text())
    raw["datasets"]["dogs_cats"]["splits"]["ORIG"]["labels"] = "inputs/dogs_cats/ORIG_labels.npy"
    raw["files"]["inputs/dogs_cats/ORIG_labels.npy"] = raw["files"].pop("labels/dogs_cats/ORIG.npy")
    path.write_text(json.dumps(raw))
    with pytest.raises(GraderFault, match="must be a path under labels/"):
        load_manifest(copy_of_built)


def _replace_with_rehash(root: Path, rel: str, array: np.ndarray, **save: bool) -> None:
    np.save(root / rel, array, **save)
    path = root / "manifest.json"
    raw = json.loads(path.read_text())
    raw["files"][rel] = sha256_file(root / rel)
    path.write_text(json.dumps(raw))


def test_verify_checks_shapes_and_dtypes_not_only_hashes(copy_of_built: Path) -> None:
    rel = "inputs/dogs_cats/NEW.npy"
    _replace_with_rehash(copy_of_built, rel, np.zeros((20, 3, 64, 64), np.uint8))
    with pytest.raises(GraderFault, match=r"NEW\.npy: holds uint8 \(20, 3, 64, 64\)"):
        load_manifest(copy_of_built)


def test_verify_checks_class_counts(copy_of_built: Path) -> None:
    rel = "labels/dogs_cats/AUG.npy"
    _replace_with_rehash(copy_of_built, rel, np.zeros(20, np.int64))
    with pytest.raises(GraderFault, match=r"AUG\.npy: class counts"):
        load_manifest(copy_of_built)


def test_verify_refuses_pickled_arrays(copy_of_built: Path) -> None:
    rel = "labels/dogs_cats/AUG.npy"
    _replace_with_rehash(copy_of_built, rel, np.array([None] * 20, dtype=object), allow_pickle=True)
    with pytest.raises(GraderFault, match=r"AUG\.npy: not a plain \.npy array"):
        load_manifest(copy_of_built)


def test_verify_refuses_a_broken_manifest(copy_of_built: Path) -> None:
    path = copy_of_built / "manifest.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(GraderFault, match=r"manifest\.json: unreadable"):
        load_manifest(copy_of_built, verify=False)
    path.write_text(json.dumps({"format": 4}))
    with pytest.raises(GraderFault, match="not a format-3 manifest"):
        load_manifest(copy_of_built, verify=False)


def test_rebuild_replaces_the_old_set_atomically(tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    counts = {"ORIG": 6, "AUG": 4, "NEW": 4}
    first = build_hidden_data(out, fashion_dir=None, synthetic_counts=counts, seed=1)
    (out / "inputs" / "stale.txt").write_text("left over")
    second = build_hidden_data(
        out, fashion_dir=None, synthetic_counts=counts, seed=2, num_classes=3
    )
    assert second.datasets["dogs_cats"].classes == synthetic.class_names(3)
    assert first.files != second.files
    assert not (out / "inputs" / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn"]  # no temporary folders left


def test_failed_build_keeps_the_old_set(tmp_path: Path) -> None:
    out = tmp_path / "cnn"
    counts = {"ORIG": 4, "AUG": 4, "NEW": 4}
    before = build_hidden_data(out, fashion_dir=None, synthetic_counts=counts, seed=1)
    root = image_tree(tmp_path / "dc", ("cat", "dog"))
    (root / "NEW" / "dog" / "zzz.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataBuildError, match=r"zzz\.png"):
        build_hidden_data(out, fashion_dir=None, dogs_cats_dir=root)
    assert load_manifest(out).files == before.files
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cnn", "dc"]


def test_build_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "thesis.tex").write_text("precious")
    with pytest.raises(DataBuildError, match="refusing to replace"):
        build_hidden_data(tmp_path / "documents", fashion_dir=None)
    assert (tmp_path / "documents" / "thesis.tex").read_text() == "precious"


# --------------------------------------------------------------------------- CLI


def test_parse_counts() -> None:
    assert parse_counts("7") == {"*": 7}
    assert parse_counts("ORIG=5, dogs_cats.NEW=2") == {"ORIG": 5, "dogs_cats.NEW": 2}


@needs_fashion
def test_cli_builds_and_says_synthetic(tmp_path: Path) -> None:
    from grader.cli import main

    out = tmp_path / "hidden"
    result = CliRunner().invoke(
        main,
        [
            "build-tests",
            "--out",
            str(out),
            "--synthetic-count",
            "ORIG=10,AUG=6,NEW=6",
            "--seed",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC STAND-IN" in result.output
    assert "NOTE: fashion_mnist is a PUBLIC data set" in result.output
    assert "--source fashion_mnist=DIR" in result.output
    assert "fashion_mnist: test 10000 images" in result.output
    assert "dogs_cats: ORIG 10, AUG 6, NEW 6 images; classes: cat, dog" in result.output
    manifest = load_manifest(out)
    assert manifest.datasets["dogs_cats"].splits["ORIG"].count == 10


def test_cli_default_out_and_classes(tmp_path: Path) -> None:
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    write_idx(fashion / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28), np.uint8), compress=True)
    write_idx(fashion / "t10k-labels-idx1-ubyte.gz", np.arange(4, dtype=np.uint8), compress=True)
    result = CliRunner().invoke(
        build_tests,
        ["--fashion-mnist", str(fashion), "--synthetic-count", "6", "--classes", "3"],
        env={"GRADER_HOME": str(tmp_path / "home")},
    )
    assert result.exit_code == 0, result.output
    manifest = load_manifest(tmp_path / "home" / "hidden" / "cnn")
    assert len(manifest.datasets["dogs_cats"].classes) == 3
    assert manifest.datasets["fashion_mnist"].splits["test"].count == 4


@pytest.mark.parametrize("option", ["--fashion-mnist", "--fashion-dir"])
def test_cli_missing_fashion_dir_is_a_clear_error(tmp_path: Path, option: str) -> None:
    result = CliRunner().invoke(
        build_tests, ["--out", str(tmp_path / "out"), option, str(tmp_path / "nope")]
    )
    assert result.exit_code == 2
    assert f"--source fashion_mnist={tmp_path / 'nope'}: no such folder." in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@needs_fashion
def test_cli_bad_image_folder_is_a_clear_error(tmp_path: Path) -> None:
    root = image_tree(tmp_path / "dc", ("cat", "dog"))
    shutil.rmtree(root / "NEW")
    result = CliRunner().invoke(
        build_tests, ["--out", str(tmp_path / "out"), "--dogs-cats", str(root)]
    )
    assert result.exit_code == 2
    assert "Error: image folder" in result.output
    assert "no NEW/ folder" in result.output
    assert "Traceback" not in result.output


@needs_fashion
def test_cli_builds_from_one_folder_per_class(tmp_path: Path) -> None:
    root = class_tree(tmp_path, ("cat", "dog"), per_class=4)
    result = CliRunner().invoke(
        build_tests, ["--out", str(tmp_path / "out"), "--dogs-cats", str(root), "--new-fraction", "0.5",
                      "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "one folder per class (cat, dog)" in result.output
    assert "dogs_cats: ORIG 4, AUG 4, NEW 4 images" in result.output
    assert "dogs_cats from one image folder per class" in result.output
    assert "NOTE: NEW is a seeded held-out 50% of the same image folders as ORIG" in result.output
    assert "SYNTHETIC" not in result.output
    manifest = load_manifest(tmp_path / "out")
    assert "not newly collected" in manifest.datasets["dogs_cats"].note


def test_cli_new_fraction_needs_an_image_folder(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_tests, ["--out", str(tmp_path / "out"), "--new-fraction", "0.3"])
    assert result.exit_code == 2
    assert "--held-out needs image folders" in result.output


def test_cli_bad_count_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        build_tests, ["--out", str(tmp_path), "--synthetic-count", "TEST=4"]
    )
    assert result.exit_code == 2
    assert "count TEST=4: no split TEST" in result.output


# --------------------------------------------------------------------------- learnability


@pytest.mark.slow
def test_a_tiny_cnn_learns_the_synthetic_data() -> None:
    import torch
    from torch import nn

    train_x, train_y = make_split("train", 2000, seed=21)
    orig_x, orig_y = make_split("ORIG", 400, seed=1234)
    new_x, new_y = make_split("NEW", 400, seed=1234)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic, and fair to a shared machine
    try:
        torch.manual_seed(0)
        model = nn.Sequential(
            nn.AvgPool2d(2),  # 48x48 keeps the test quick
            nn.Conv2d(3, 16, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 12 * 12, 2),
        )
        optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
        x = torch.from_numpy(train_x).float() / 255
        y = torch.from_numpy(train_y)
        for _ in range(3):
            order = torch.randperm(len(x))
            for start in range(0, len(x), 32):
                batch = order[start : start + 32]
                optimiser.zero_grad()
                nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
                optimiser.step()

        def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
            with torch.no_grad():
                predicted = model(torch.from_numpy(images).float() / 255).argmax(dim=1)
            return float((predicted.numpy() == labels).mean())

        orig, new = accuracy(orig_x, orig_y), accuracy(new_x, new_y)
    finally:
        torch.set_num_threads(threads)
    print(f"tiny CNN, 3 epochs on 2000 images: ORIG {orig:.3f}, NEW {new:.3f}")
    assert orig > 0.75
    assert new < orig
