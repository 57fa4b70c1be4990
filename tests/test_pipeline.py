"""grade() end to end: intake -> real sandbox (bwrap, then docker) -> judge -> result, with real models."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from grader.cli import main
from grader.config import SandboxSettings, Settings
from grader.errors import GraderFault
from grader.pipeline import grade
from grader.result import GradeResult, Status
from tests.conftest import SOLUTION, TEST_SPLIT_COUNTS, build_submission

FASHION = Path("/usr/share/datasets/fashion-mnist")


def independent_mynet_accuracy(model_pt: Path) -> float:
    """MyNet's accuracy on the real test set, computed here without any grader code."""
    import importlib.util

    import torch

    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as fh:
        images = np.frombuffer(fh.read(), dtype=np.uint8, offset=16).reshape(-1, 1, 28, 28)
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz") as fh:
        labels = np.frombuffer(fh.read(), dtype=np.uint8, offset=8).astype(np.int64)
    spec = importlib.util.spec_from_file_location("indep_cnn", SOLUTION / "pytorch_cnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.MyNet()
    model.load_state_dict(torch.load(model_pt, weights_only=True))
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(images), 500):
            x = torch.from_numpy(images[start:start + 500].copy()).float() / 255
            correct += int((module.classify(model, x).numpy() == labels[start:start + 500]).sum())
    assert len(images) == 10_000
    return correct / len(images)


@pytest.fixture(scope="module")
def graded_by_cli(backend, grader_home, checkpoints, tmp_path_factory):
    """The reference submission graded once per backend by `grader grade --json`; the tests
    that use it only read it (a full grade is the slowest step of this module)."""
    folder = tmp_path_factory.mktemp(f"cli-{backend}")
    archive = build_submission(folder / "submission.zip", checkpoints)
    out = folder / "result.json"
    settings = Settings(home=grader_home,
                        sandbox=SandboxSettings(backend=backend, python=sys.executable))
    res = CliRunner().invoke(main, ["grade", str(archive), "--json", str(out)],
                             obj={"settings": settings})
    return archive, res, out


def test_good_submission_is_graded_fully(graded_by_cli, assignment, backend, checkpoints):
    archive, res, out = graded_by_cli
    assert res.exit_code == 0, res.output
    result = GradeResult.from_json(out.read_text())
    assert result.status is Status.GRADED, result.message
    assert result.submission_sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    numpy_part, mynet, finetune = result.parts
    assert [p.name for p in result.parts] == ["numpy_nn", "mynet", "finetune"]
    assert numpy_part.passed, numpy_part.message
    assert numpy_part.score == 40
    assert all(t.passed for t in numpy_part.tests)
    assert len(numpy_part.tests) > 30

    expected = independent_mynet_accuracy(checkpoints["model.pt"])
    assert mynet.metrics["accuracy"] == expected
    assert mynet.passed == (expected > 0.75)
    assert "75.0%" in mynet.message

    m = finetune.metrics
    assert set(m) == {"ORIG", "AUG", "NEW", "weighted"}
    assert m["weighted"] == pytest.approx(0.6 * m["ORIG"] + 0.3 * m["AUG"] + 0.1 * m["NEW"], abs=1e-12)
    assert set(finetune.public_metrics) == set(m)
    assert set(finetune.private_metrics) == set(m)  # the final ranking's numbers
    for split, n in TEST_SPLIT_COUNTS.items():  # public and private part make up the whole split
        n_public = round(n * assignment.public_fraction)
        assert m[split] * n == pytest.approx(finetune.public_metrics[split] * n_public
                                             + finetune.private_metrics[split] * (n - n_public))
    env = result.environment
    assert env["backend"] == backend
    assert env["versions"]["torch"].startswith("2.14")
    assert env["data"] == {"fashion_mnist": "public", "dogs_cats": "synthetic"}
    assert "on the hidden FashionMNIST test set (public);" in mynet.message
    assert result.flags == ()  # the briefly trained MyNet is far below the 97 % ceiling
    assert result.runtime_s > 0


# Backend-independent (the judge's work; test_sandbox_docker.py grades in docker like bwrap): bwrap only.
def test_same_submission_graded_twice_gives_identical_results(make_submission, assignment, settings):
    archive = make_submission(numpy_nn__py=(SOLUTION / "numpy_nn.py").read_text()
                              + "\nSigmoid.backward = lambda self, g: g\n")

    def stable(result):
        data = result.to_dict()
        data.pop("runtime_s")
        for part in data["parts"]:
            part.pop("runtime_s")
        return data

    first = grade(archive, assignment, settings)
    assert stable(first) == stable(grade(archive, assignment, settings))


def test_cli_grade_writes_the_json_contract(graded_by_cli):
    _archive, res, out = graded_by_cli
    assert res.exit_code == 0, res.output
    assert "numpy_nn" in res.output
    assert "mynet" in res.output
    assert "finetune" in res.output
    assert "note: dogs_cats is a synthetic stand-in data set, not real photos" in res.output
    assert "note: fashion_mnist is a PUBLIC data set: anyone can have its labels" in res.output
    assert "FLAG" not in res.output
    data = json.loads(out.read_text())
    for key in ("status", "score", "max_score", "passed", "message", "parts", "submission_sha256",
                "runtime_s", "environment", "flags"):
        assert key in data
    assert {p["name"] for p in data["parts"]} == {"numpy_nn", "mynet", "finetune"}


def test_missing_hidden_data_names_the_command(make_submission, assignment, settings, tmp_path):
    empty = dataclasses.replace(settings, home=tmp_path / "nothing-here")
    with pytest.raises(GraderFault, match="grader build-tests"):
        grade(make_submission(), assignment, empty)
    res = CliRunner().invoke(main, ["grade", str(make_submission("again.zip"))],
                             obj={"settings": empty})
    assert res.exit_code == 3
    assert "grader build-tests" in res.output


def test_invalid_zip_is_refused_before_anything_runs(make_submission, assignment, settings):
    result = grade(make_submission(model__pt=None), assignment, settings)
    assert result.status is Status.INVALID
    assert "model.pt" in result.message
    assert result.parts == ()
    assert not result.counts_as_attempt


# Backend-independent (the judge's work; test_sandbox_docker.py grades in docker like bwrap): bwrap only.
def test_safetensors_checkpoints_are_accepted(make_submission, assignment, settings, checkpoints):
    import torch
    from safetensors.torch import save_file

    path = checkpoints["model.pt"].with_name("model.safetensors")
    save_file(torch.load(checkpoints["model.pt"], weights_only=True), path)
    result = grade(make_submission(model__pt=None, model__safetensors=path.read_bytes()),
                   assignment, settings)
    assert result.part("mynet").status is Status.GRADED
    assert result.part("mynet").metrics["accuracy"] > 0.5
