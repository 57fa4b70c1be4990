"""``grader sync-tests`` / ``verify-tests``: each grading machine's checked copy of the hidden data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.datasets.manifest import MANIFEST_NAME, load_manifest
from grader.datasets.sync import fingerprint, sync_hidden_data
from tests.factories import build_hidden_data

SMALL = {"ORIG": 8, "AUG": 4, "NEW": 4}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The set as the machine that builds it has it (no FashionMNIST: quick)."""
    out = tmp_path_factory.mktemp("central") / "cnn"
    build_hidden_data(out, fashion_dir=None, synthetic_counts=SMALL, seed=5)
    return out


def _sync(*args: str, home: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["sync-tests", *args], env={"GRADER_HOME": str(home)})
    return result.exit_code, result.output


def test_sync_copies_verifies_and_prints_the_fingerprint(source: Path, tmp_path: Path) -> None:
    code, out = _sync(str(source), home=tmp_path / "worker")
    assert code == 0, out
    dest = tmp_path / "worker" / "hidden" / "cnn"
    manifest = load_manifest(dest, verify=True)
    assert (dest / MANIFEST_NAME).read_bytes() == (source / MANIFEST_NAME).read_bytes()
    assert set(manifest.files) == set(load_manifest(source).files)
    assert f"fingerprint {fingerprint(source)}" in out
    assert "Copied" in out

    code, out = _sync(str(source), home=tmp_path / "worker")
    assert code == 0, out
    assert "is up to date" in out


def test_sync_copies_only_what_differs_and_repairs_damage(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    sync_hidden_data(source, dest)
    victim = next(p for p in (dest / "inputs").rglob("*.npy"))
    array = np.load(victim)
    array.flat[0] ^= 0xFF
    np.save(victim, array)  # a flipped pixel: the copy no longer verifies
    report = sync_hidden_data(source, dest)
    assert report.copied == 2  # the damaged file and the manifest
    assert report.kept == len(load_manifest(source).files) - 1
    load_manifest(dest, verify=True)


def test_a_damaged_source_is_refused_and_the_copy_is_kept(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    sync_hidden_data(source, dest)
    before = fingerprint(dest)
    broken = Path(shutil.copytree(source, tmp_path / "broken"))
    labels = next((broken / "labels").rglob("*.npy"))
    labels.write_bytes(labels.read_bytes()[:-8])  # truncated in transit
    code, out = _sync(str(broken), "--dest", str(dest), home=tmp_path)
    assert code == 2, out
    assert "is not a usable hidden test set" in out
    assert "SHA-256" in out
    assert "Traceback" not in out
    assert fingerprint(dest) == before
    load_manifest(dest, verify=True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".copy.sync-")]  # nothing left over


def test_sync_refuses_to_replace_a_foreign_folder(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "home-folder"
    dest.mkdir()
    (dest / "thesis.tex").write_text("precious")
    code, out = _sync(str(source), "--dest", str(dest), home=tmp_path)
    assert code == 2, out
    assert "refusing to replace it" in out
    assert (dest / "thesis.tex").read_text() == "precious"


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    code, out = _sync(str(tmp_path / "nowhere"), home=tmp_path)
    assert code == 2, out
    assert "not a usable hidden test set" in out
    assert "build-tests" in out


def test_verify_tests_reports_damage_and_the_fingerprint(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    sync_hidden_data(source, dest)
    ok = CliRunner().invoke(main, ["verify-tests", str(dest)])
    assert ok.exit_code == 0, ok.output
    assert f"fingerprint {fingerprint(source)}" in ok.output
    extra = dest / "inputs" / "dogs_cats" / "extra.npy"
    np.save(extra, np.zeros(3, np.uint8))
    bad = CliRunner().invoke(main, ["verify-tests", str(dest)])
    assert bad.exit_code == 2, bad.output
    assert "unexpected file under inputs/" in bad.output
