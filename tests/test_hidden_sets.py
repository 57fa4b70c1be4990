"""Hidden sets that are really hidden: the instructor's private FashionMNIST set, the
provenance every result carries (private / public / synthetic), and the plausibility
ceiling that flags an implausible accuracy for staff, through the real sandbox."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grader.batch.csvout import Entry, Row, write_csv
from grader.config import load_assignment
from grader.datasets.cli import build_tests
from grader.datasets.fashion import DEFAULT_FASHION_DIR
from grader.datasets.manifest import load_labels, load_manifest
from grader.datasets.provenance import Provenance, data_notes
from grader.errors import GraderFault
from grader.export import gradescope
from grader.plausibility import plausibility_flags
from grader.result import Flag, GradeResult, Status
from tests.factories import build_hidden_data, private_fashion_set, public_fashion_test, write_idx

SMALL = {"ORIG": 12, "AUG": 12, "NEW": 12}

pytestmark = pytest.mark.skipif(
    not (DEFAULT_FASHION_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Debian's dataset-fashion-mnist is not installed",
)


def _cli_build(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(build_tests, list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------- the builder


def test_build_from_the_instructors_private_set(tmp_path: Path) -> None:
    images, labels = private_fashion_set(tmp_path / "mine", n=500, seed=5)
    code, output = _cli_build("--out", str(tmp_path / "out"), "--fashion-mnist",
                              str(tmp_path / "mine"), "--synthetic-count", "4")
    assert code == 0, output
    assert "fashion_mnist: test 500 images" in output
    assert "PUBLIC" not in output  # only the synthetic dogs and cats get a NOTE
    assert "SYNTHETIC STAND-IN" in output

    manifest = load_manifest(tmp_path / "out")
    info = manifest.dataset("fashion_mnist")
    assert info.provenance is Provenance.PRIVATE
    assert info.title == "FashionMNIST test set"
    assert info.note == ""
    assert str(tmp_path / "mine") in info.source
    split = info.splits["test"]
    assert split.count == 500
    assert np.array_equal(np.load(split.inputs, allow_pickle=False), images[:, None])
    assert np.array_equal(load_labels(split), labels.astype(np.int64))
    assert split.class_counts == tuple(np.bincount(labels, minlength=10))
    raw = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert raw["datasets"]["fashion_mnist"]["provenance"] == "private"
    assert raw["datasets"]["dogs_cats"]["provenance"] == "synthetic"


@pytest.mark.parametrize(
    ("public", "provenance"),
    [(500, Provenance.PUBLIC), (6, Provenance.PUBLIC), (5, Provenance.PRIVATE)],
)
def test_public_images_in_the_given_set_are_found(
    tmp_path: Path, public: int, provenance: Provenance
) -> None:
    """A "private" folder that is (more than 1 % of) the public t10k set, reshuffled and
    re-encoded, is still public: its labels are anyone's."""
    private_fashion_set(tmp_path / "mine", n=500, seed=9, public=public)
    manifest = build_hidden_data(tmp_path / "out", fashion_dir=tmp_path / "mine",
                                 synthetic_counts=SMALL, seed=1)
    info = manifest.dataset("fashion_mnist")
    assert info.provenance is provenance
    assert f"{public:,} of its 500 images are images of the public set" in info.note
    assert ("--source fashion_mnist=DIR" in info.note) == (provenance is Provenance.PUBLIC)


def _broken(folder: Path, case: str) -> str:
    """Write a broken t10k pair into ``folder``; returns the file name the error must name."""
    images, labels = public_fashion_test()
    x, y = images[:20, :, ::-1].copy(), labels[:20].copy()
    img, lab = folder / "t10k-images-idx3-ubyte.gz", folder / "t10k-labels-idx1-ubyte.gz"
    if case == "labels file given as images":
        write_idx(img, y, compress=True)
    elif case == "int32 images":
        write_idx(img, x.astype(np.int32), code=0x0C, compress=True)
    elif case == "2-D labels":
        write_idx(lab, y.reshape(4, 5), compress=True)
    elif case == "32x32 images":
        write_idx(img, np.zeros((20, 32, 32), np.uint8), compress=True)
    elif case == "label 10":
        y[7] = 10
    elif case == "fewer labels":
        write_idx(lab, y[:19], compress=True)
    elif case == "no images":
        write_idx(img, np.zeros((0, 28, 28), np.uint8), compress=True)
        write_idx(lab, np.zeros(0, np.uint8), compress=True)
    elif case == "bad magic":
        img.write_bytes(b"\x01\x02\x08\x03" + bytes(12))
    elif case == "truncated":
        img.write_bytes(write_idx(folder / "whole", x).read_bytes()[:-100])
        (folder / "whole").unlink()
    elif case == "no labels file":
        pass
    for path, array in ((img, x), (lab, y)):
        if not path.exists() and not (case == "no labels file" and path == lab):
            write_idx(path, array, compress=True)
    return lab.name if case in ("2-D labels", "label 10", "fewer labels", "no labels file") else img.name


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("labels file given as images", "magic number 0x00000801 (that of a labels file) is not "
                                        "that of an images file (0x00000803)"),
        ("int32 images", "magic number 0x00000C03 is not that of an images file"),
        ("2-D labels", "magic number 0x00000802 is not that of a labels file (0x00000801)"),
        ("32x32 images", "the images are 32x32 pixels; the spec's size is 28x28"),
        ("label 10", "label 10 of image 7 is not a class; labels must be 0-9 (1 of 20 are not)"),
        ("fewer labels", "19 labels for 20 images"),
        ("no images", "holds no images"),
        ("bad magic", "not an IDX file (bad magic number 01020803)"),
        ("truncated", "truncated IDX file"),
        ("no labels file", "t10k-labels-idx1-ubyte[.gz] not found in"),
    ],
)
def test_a_broken_private_set_is_refused_naming_the_file(tmp_path: Path, case: str, says: str) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    name = _broken(folder, case)
    code, output = _cli_build("--out", str(tmp_path / "out"), "--fashion-mnist", str(folder))
    assert code == 2, output
    error = output.strip().splitlines()[-1]  # after "Building …" and "reading …"
    assert error.startswith(f"Error: {folder / name}: ") or case == "no labels file"
    assert name.removesuffix(".gz") in error
    assert str(folder) in error
    assert says in error
    assert "Traceback" not in output
    assert not (tmp_path / "out").exists()


def test_a_format_1_manifest_is_read_with_its_provenance(grader_home: Path, tmp_path: Path) -> None:
    """Sets built before provenance existed: FashionMNIST was the public set, the dogs and
    cats synthetic unless built from folders."""
    copy = Path(shutil.copytree(grader_home / "hidden" / "cnn", tmp_path / "cnn"))
    path = copy / "manifest.json"
    raw = json.loads(path.read_text())
    assert raw["format"] == 3
    raw["format"] = 1
    for name, dataset in raw["datasets"].items():
        dataset.pop("dtype")  # format 3 added it; older sets were uint8
        dataset["synthetic"] = dataset.pop("provenance") == "synthetic"
        assert dataset["synthetic"] == (name == "dogs_cats")
    path.write_text(json.dumps(raw))
    manifest = load_manifest(copy)
    assert manifest.dataset("fashion_mnist").provenance is Provenance.PUBLIC
    assert manifest.dataset("dogs_cats").provenance is Provenance.SYNTHETIC
    raw["format"] = 2
    for dataset in raw["datasets"].values():
        dataset.pop("synthetic")
        dataset["provenance"] = "secret"
    path.write_text(json.dumps(raw))
    with pytest.raises(GraderFault, match="provenance must be one of private, public, synthetic"):
        load_manifest(copy)


# --------------------------------------------------------------------------- grading


def test_an_accuracy_above_the_ceiling_is_flagged_for_staff(flagged) -> None:
    res, out, _archive, _spec = flagged
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    result = GradeResult.from_dict(data)
    assert result.status is Status.GRADED, result.message
    mynet = result.part("mynet")
    accuracy = mynet.metrics["accuracy"]
    assert accuracy > 0.4
    # flagged, with the reason, and nothing else changed: full points, passed
    reason = (f"MyNet accuracy {100 * accuracy:.2f}% on the hidden test set is above the "
              "plausibility ceiling of 40%: check the submission for labels carried in its code "
              "or checkpoint before trusting the score.")
    assert data["flags"] == [{"part": "mynet", "reason": reason}]
    assert result.flags == (Flag("mynet", reason),)
    assert mynet.passed
    assert mynet.score == mynet.max_score == 30
    assert result.score == sum(p.score for p in result.parts)
    assert reason not in result.message  # the student's message is the judge's, unchanged
    # the staff's CLI summary shows it
    assert f"FLAG mynet: {reason}" in res.output
    # graded on the private set: the result says so, and no note about public data
    assert result.environment["data"] == {"fashion_mnist": "private", "dogs_cats": "synthetic"}
    assert "(public)" not in mynet.message
    assert "on the hidden FashionMNIST test set;" in mynet.message
    assert data_notes(result.environment) == [
        "dogs_cats is a synthetic stand-in data set, not real photos"]
    assert "PUBLIC" not in res.output


def test_the_batch_csv_has_the_flags_and_the_gradescope_export_not(flagged, tmp_path: Path) -> None:
    _res, out, _archive, spec_dir = flagged
    result = GradeResult.from_json(out.read_text())
    spec = load_assignment(spec_dir)
    path = tmp_path / "grades.csv"
    write_csv(path, [Row(Entry("alice", "alice.zip", 0.0, "ab" * 32, result), ""),
                     Row(Entry("bob", "bob.zip", 0.0, "cd" * 32, dataclasses.replace(result, flags=())), "")],
              spec)
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO(path.read_text()))}
    assert rows["alice"]["flags"] == result.flags[0].reason
    assert rows["bob"]["flags"] == ""
    exported = json.dumps(gradescope(result, spec))
    assert "plausibility" not in exported


def test_the_same_accuracy_under_the_shipped_ceiling_is_not_flagged(flagged) -> None:
    """The control: the same trained MyNet (about 60 % on the mirrored set) is far below 97 %."""
    _res, out, _archive, _spec = flagged
    result = GradeResult.from_json(out.read_text())
    assert 0.4 < result.part("mynet").metrics["accuracy"] < 0.97
    assert plausibility_flags(load_assignment(), result.parts) == ()


def test_the_ceiling_applies_to_finetunes_weighted_accuracy(flagged) -> None:
    _res, out, _archive, spec_dir = flagged
    result = GradeResult.from_json(out.read_text())
    spec = load_assignment(spec_dir)
    finetune = result.part("finetune")
    weighted = finetune.metrics["weighted"]
    part = dataclasses.replace(spec.part("finetune"), threshold=0.0,
                               suspicious_above=max(weighted - 0.01, 0.001))
    lowered = dataclasses.replace(spec, parts=(part,))
    (flag,) = plausibility_flags(lowered, [finetune])
    assert flag.part == "finetune"
    assert flag.reason.startswith(f"FinetuneNet weighted accuracy {100 * weighted:.2f}% on the hidden")
    at_ceiling = dataclasses.replace(lowered, parts=(dataclasses.replace(part, suspicious_above=weighted),))
    assert plausibility_flags(at_ceiling, [finetune]) == ()  # "above" is strict
