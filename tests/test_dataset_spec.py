"""Datasets as configuration: the [datasets.*] tables of a spec, parsed and built.

A second lab's sets (the FashionMNIST test set and a seeded rotated copy, stored normalised)
are built from a spec written here, through the same builder and CLI as the first lab's.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from grader.config import load_assignment
from grader.datasets.build import build_sets
from grader.datasets.cli import build_tests
from grader.datasets.errors import DataBuildError
from grader.datasets.fashion import DEFAULT_FASHION_DIR, load_fashion_test
from grader.datasets.manifest import load_labels, load_manifest
from grader.datasets.provenance import Provenance
from grader.datasets.spec import Idx, Transform, parse_datasets
from grader.datasets.transforms import rotate, rotation_angles
from grader.errors import GraderFault, SpecError
from tests.factories import write_idx, write_spec

needs_fashion = pytest.mark.skipif(
    not (DEFAULT_FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)
MEAN, STD = 0.2860, 0.3530
ROTATED_SPEC = f"""
[datasets.fashion]
title = "FashionMNIST test set"
classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot"]
size = [28, 28]
dir = "{DEFAULT_FASHION_DIR}"
public_dir = "{DEFAULT_FASHION_DIR}"
normalize = {{ mean = [{MEAN}], std = [{STD}] }}

[datasets.fashion.splits.TEST]
from = "idx"
images = "t10k-images-idx3-ubyte"
labels = "t10k-labels-idx1-ubyte"
count = 300

[datasets.fashion.splits.ROTATED]
from = "transform"
of = "TEST"
transform = "rotate"
degrees = 25
seed = 2026
public_fraction = 0.25
"""


def datasets_of(text: str, public_fraction: float = 0.5) -> dict[str, Any]:
    return parse_datasets(tomllib.loads(text)["datasets"], public_fraction=public_fraction)


# --------------------------------------------------------------------------- parsing


def test_the_rotated_spec_parses_into_typed_tables() -> None:
    spec = datasets_of(ROTATED_SPEC)["fashion"]
    test, rotated = spec.splits["TEST"], spec.splits["ROTATED"]
    assert test.source == Idx("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 300)
    assert rotated.source == Transform("TEST", "rotate", {"degrees": 25.0})
    assert (test.seed, rotated.seed) == (1234, 2026)
    assert (test.public_fraction, rotated.public_fraction) == (None, 0.25)  # None: the board's
    assert spec.channels == 1
    assert spec.dtype == "float32"
    assert spec.normalize is not None
    assert spec.normalize.mean == (MEAN,)


def test_the_cnn_spec_declares_its_datasets_on_the_assignment() -> None:
    datasets = load_assignment().datasets
    assert list(datasets) == ["fashion_mnist", "dogs_cats"]
    assert list(datasets["dogs_cats"].splits) == ["ORIG", "AUG", "NEW"]
    assert datasets["dogs_cats"].splits["AUG"].source == Transform("ORIG", "augment", {})
    assert datasets["fashion_mnist"].dtype == "uint8"


BAD_SPECS = [
    ('from = "csv"', "[datasets.fashion.splits.ROTATED]: key 'from' must be one of idx, "
                     "image_folder, synthetic, transform, got 'csv'"),
    ('transform = "shear"', "[datasets.fashion.splits.ROTATED]: unknown transform 'shear' "
                            "(known: augment, rotate)"),
    ('of = "TRAIN"', "[datasets.fashion.splits.ROTATED]: key 'of' names no split of this "
                     "dataset: 'TRAIN' (known: TEST, ROTATED)"),
    ('of = "ROTATED"', "transforms go round in a circle (ROTATED <- ROTATED)"),
    ("degrees = 25", "[datasets.fashion.splits.ROTATED]: missing key 'degrees' (a parameter of "
                     "'rotate')"),
    ("degrees = 25\nangle = 3", "[datasets.fashion.splits.ROTATED]: unknown key 'angle'"),
    ("seed = 2026", "[datasets.fashion.splits.ROTATED]: key 'seed' must be at least 0, got -1"),
    ("public_fraction = 0.25", "key 'public_fraction' must lie in (0, 1], got 1.5"),
    ('size = [28, 28]', "[datasets.fashion]: key 'size' must be [height, width] in pixels"),
    (f"normalize = {{ mean = [{MEAN}], std = [{STD}] }}",
     "[datasets.fashion].normalize: 'mean' and 'std' need one value per channel (1)"),
    ('classes = ["T-shirt/top",', "[datasets.fashion]: unknown key 'labels'"),
]
REPLACEMENTS = {
    'from = "csv"': ('from = "transform"\nof', 'from = "csv"\nof'),
    'transform = "shear"': ('transform = "rotate"', 'transform = "shear"'),
    'of = "TRAIN"': ('of = "TEST"', 'of = "TRAIN"'),
    'of = "ROTATED"': ('of = "TEST"', 'of = "ROTATED"'),
    "degrees = 25": ("degrees = 25\n", ""),
    "degrees = 25\nangle = 3": ("degrees = 25\n", "degrees = 25\nangle = 3\n"),
    "seed = 2026": ("seed = 2026", "seed = -1"),
    "public_fraction = 0.25": ("public_fraction = 0.25", "public_fraction = 1.5"),
    "size = [28, 28]": ("size = [28, 28]", "size = [28]"),
    f"normalize = {{ mean = [{MEAN}], std = [{STD}] }}":
        (f"mean = [{MEAN}]", f"mean = [{MEAN}, {MEAN}]"),
    'classes = ["T-shirt/top",': ('classes = ["T-shirt/top",', 'labels = "x"\nclasses = ["T-shirt/top",'),
}


@pytest.mark.parametrize(("change", "says"), BAD_SPECS, ids=[c for c, _ in BAD_SPECS])
def test_a_bad_dataset_table_is_a_spec_error_naming_table_and_key(change: str, says: str) -> None:
    old, new = REPLACEMENTS[change]
    assert old in ROTATED_SPEC
    with pytest.raises(SpecError) as info:
        datasets_of(ROTATED_SPEC.replace(old, new, 1))
    assert says in str(info.value)


def test_config_names_the_spec_file_of_a_bad_dataset_table(tmp_path: Path) -> None:
    spec = (Path(__file__).parent.parent / "hidden_tests" / "cnn" / "assignment.toml").read_text()
    write_spec(tmp_path, spec.replace('style = "shifted"', 'style = "sepia"'))
    with pytest.raises(SpecError, match=r"assignment\.toml: \[datasets\.dogs_cats\.splits\.NEW\]"
                                        r"\.stand_in: unknown style 'sepia'"):
        load_assignment(tmp_path)


# --------------------------------------------------------------------------- the rotate transform


def test_rotate_is_seeded_per_image_and_fills_with_zero() -> None:
    images = np.full((6, 1, 28, 28), 200, np.uint8)
    once = rotate(images, seed=5, degrees=25)
    assert once.dtype == np.uint8
    assert once.shape == images.shape
    assert rotate(images, seed=5, degrees=25).tobytes() == once.tobytes()
    assert np.array_equal(rotate(images[:2], seed=5, degrees=25), once[:2])  # batch-independent
    assert not np.array_equal(rotate(images, seed=6, degrees=25), once)
    angles = rotation_angles(1000, seed=5, degrees=25)
    assert angles.min() >= -25
    assert angles.max() <= 25
    assert angles.min() < -24
    assert angles.max() > 24
    for image, angle in zip(once, angles, strict=False):
        assert image[0, 14, 14] == 200
        assert (image == 0).any() == (abs(angle) > 5) or 1 < abs(angle) <= 5  # corners: 0
    assert set(np.unique(once)) <= {0, 200}  # nearest pixel: no blended values


def test_rotate_matches_torchvision() -> None:
    from torchvision.transforms import functional

    images = np.random.default_rng(1).integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    ours = rotate(images, seed=9, degrees=25)
    for image, angle, got in zip(images, rotation_angles(4, 9, 25), ours, strict=True):
        want = functional.rotate(Image.fromarray(image[0]), float(angle), fill=0)
        assert np.array_equal(np.asarray(want), got[0])


# --------------------------------------------------------------------------- building


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("second-lab") / "fashion_cnn"
    if DEFAULT_FASHION_DIR.is_dir():
        build_sets(datasets_of(ROTATED_SPEC), out)
    return out


@needs_fashion
def test_an_idx_split_and_its_rotated_copy_are_built_normalised(rotated: Path) -> None:
    manifest = load_manifest(rotated)
    info = manifest.dataset("fashion")
    assert info.dtype == "float32"
    assert info.input_shape == (1, 28, 28)
    assert info.provenance is Provenance.PUBLIC  # Debian's t10k images
    assert "Normalize" in info.preprocessing
    assert "float32" in info.preprocessing
    assert "'rotate' transform" in info.source
    assert "seed 2026" in info.source
    images, labels = load_fashion_test()
    test, rot = info.splits["TEST"], info.splits["ROTATED"]
    assert test.count == rot.count == 300
    stored = np.load(test.inputs, allow_pickle=False)
    assert stored.dtype == np.float32
    want = (images[:300, None].astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    assert np.array_equal(stored, want)
    assert np.array_equal(load_labels(test), labels[:300])
    assert np.array_equal(load_labels(rot), labels[:300])
    turned = rotate(images[:300, None], seed=2026, degrees=25)
    want_rot = (turned.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD)
    assert np.array_equal(np.load(rot.inputs), want_rot)
    # What torchvision's ToTensor then Normalize give, to float32 precision.
    import torch
    from torchvision import transforms

    pipe = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    reference = pipe(Image.fromarray(images[7])).numpy()
    assert np.allclose(stored[7], reference, atol=1e-6)
    assert torch.is_tensor(pipe(Image.fromarray(images[0])))


@needs_fashion
def test_the_rotated_build_is_deterministic(rotated: Path, tmp_path: Path) -> None:
    again = build_sets(datasets_of(ROTATED_SPEC), tmp_path / "again")
    assert again.files == load_manifest(rotated).files
    other = build_sets(datasets_of(ROTATED_SPEC), tmp_path / "other", seed=7)
    files = load_manifest(rotated).files
    assert other.files["inputs/fashion/TEST.npy"] == files["inputs/fashion/TEST.npy"]
    assert other.files["inputs/fashion/ROTATED.npy"] != files["inputs/fashion/ROTATED.npy"]


@needs_fashion
def test_verify_refuses_inputs_of_another_dtype(rotated: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(rotated, tmp_path / "copy"))
    path = copy / "manifest.json"
    raw = json.loads(path.read_text())
    raw["datasets"]["fashion"]["dtype"] = "uint8"
    path.write_text(json.dumps(raw))
    with pytest.raises(GraderFault, match=r"TEST\.npy: holds float32 \(300, 1, 28, 28\), expected uint8"):
        load_manifest(copy)


def test_runner_divides_pixels_only(tmp_path: Path) -> None:
    """classify_split takes uint8 inputs as pixels (/255) and float inputs as they are."""
    import types

    import torch

    from grader.runner.models import classify_split

    seen: list[torch.Tensor] = []

    def classify(model: Any, x: torch.Tensor) -> torch.Tensor:
        seen.append(x.clone())
        return torch.zeros(len(x), dtype=torch.int64)

    module = types.SimpleNamespace(classify=classify)
    model = torch.nn.Identity()
    pixels = np.full((3, 1, 2, 2), 51, np.uint8)
    normalised = np.full((3, 1, 2, 2), -0.5, np.float32)
    for name, array in (("pixels", pixels), ("normalised", normalised)):
        np.save(tmp_path / f"{name}.npy", array)
        classify_split(module, model, tmp_path / f"{name}.npy", tmp_path / f"{name}-out.npy", 2, name)
    assert torch.allclose(seen[0], torch.full((2, 1, 2, 2), 0.2))
    assert torch.equal(seen[2], torch.full((2, 1, 2, 2), -0.5))


def test_a_private_idx_set_through_the_cli(tmp_path: Path) -> None:
    spec_dir = tmp_path / "second"
    cnn = (Path(__file__).parent.parent / "hidden_tests" / "cnn" / "assignment.toml").read_text()
    # The cnn spec plus a dataset of its own (its parts keep the datasets they use).
    at = cnn.index("\n[leaderboard]")
    write_spec(spec_dir, cnn[:at] + "\n" + ROTATED_SPEC + cnn[at:])
    mine = tmp_path / "mine"
    mine.mkdir()
    rng = np.random.default_rng(3)
    write_idx(mine / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
              compress=True)
    write_idx(mine / "t10k-labels-idx1-ubyte.gz", np.arange(40, dtype=np.uint8) % 10, compress=True)
    result = CliRunner().invoke(build_tests, [str(spec_dir), "--out", str(tmp_path / "out"),
                                              "--source", f"fashion={mine}", "--count", "TEST=20",
                                              "--only", "fashion"])
    assert result.exit_code == 0, result.output
    assert "fashion: TEST 20, ROTATED 20 images" in result.output
    info = load_manifest(tmp_path / "out").dataset("fashion")
    assert info.provenance is Provenance.PRIVATE
    bad = CliRunner().invoke(build_tests, [str(spec_dir), "--out", str(tmp_path / "out2"),
                                           "--source", f"fashion={mine}", "--count", "ROTATED=5",
                                           "--only", "fashion"])
    assert bad.exit_code == 2
    assert "fashion.ROTATED is made from another split" in bad.output
    unknown = CliRunner().invoke(build_tests, ["no-such-lab"])
    assert unknown.exit_code == 2
    assert "no assignment named 'no-such-lab'" in unknown.output
    assert "known: cnn" in unknown.output


def test_a_dataset_without_files_or_stand_in_asks_for_its_folder(tmp_path: Path) -> None:
    spec = datasets_of(ROTATED_SPEC.replace(f'dir = "{DEFAULT_FASHION_DIR}"\n', "", 1))
    with pytest.raises(DataBuildError, match=r"dataset fashion is read from files: name its "
                                             r"folder with `--source fashion=DIR`"):
        build_sets(spec, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_stand_in_must_fit_its_split() -> None:
    with pytest.raises(SpecError, match=r"splits\.TEST\]: a stand-in draws RGB images; an IDX "
                                        r"split cannot have one"):
        datasets_of(ROTATED_SPEC.replace("count = 300", 'count = 300\nstand_in = { style = "plain" }'))
    with pytest.raises(SpecError, match="two synthetic splits share a style and a 'stream'"):
        datasets_of("""
[datasets.pets]
size = [96, 96]
[datasets.pets.splits.A]
from = "image_folder"
stand_in = { style = "plain", stream = 4 }
[datasets.pets.splits.B]
from = "synthetic"
style = "plain"
stream = 4
""")
