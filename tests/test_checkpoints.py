"""Checkpoints are data, never code: size cap, weights_only inside the sandbox, clear refusals."""

from __future__ import annotations

import builtins
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest

from grader.config import Assignment
from grader.pipeline import grade
from grader.result import Status
from tests.conftest import quick


def mynet_only(assignment: Assignment, **limits: int) -> Assignment:
    spec = quick(assignment, **limits)
    return dataclasses.replace(spec, parts=tuple(p for p in spec.parts if p.name == "mynet"))


class _Payload:
    """Pickles to a call of exec(code): what a malicious checkpoint carries."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (builtins.exec, (self.code,))


def _malicious_checkpoint(marker: Path) -> bytes:
    import torch

    buffer = io.BytesIO()
    code = (f"open({str(marker)!r}, 'w').write('ran'); open('/tmp/pwned', 'w').write('ran'); "
            "raise RuntimeError('PWNED')")
    torch.save({"fc.weight": _Payload(code)}, buffer)
    return buffer.getvalue()


def test_a_checkpoint_with_code_is_refused_and_its_code_never_runs(make_submission, assignment,
                                                                     backend_settings, tmp_path):
    payload = _malicious_checkpoint(tmp_path / "host-marker")
    # Control: the payload is live; a plain torch.load on the host would run it.
    control = tmp_path / "control.pt"
    control.write_bytes(_malicious_checkpoint(tmp_path / "control-marker"))
    subprocess.run([sys.executable, "-c", f"import torch; torch.load({str(control)!r}, "
                    "weights_only=False)"], capture_output=True, check=False)
    assert (tmp_path / "control-marker").read_text() == "ran"

    result = grade(make_submission(model__pt=payload), mynet_only(assignment), backend_settings)
    part = result.part("mynet")
    assert part is not None
    assert part.status is Status.CRASHED  # the student's part failed; the grader did not
    assert part.score == 0
    assert "holds pickled Python objects" in part.message, part.message
    assert "state_dict()" in part.message
    assert "PWNED" not in result.to_json()  # the code would have raised this
    assert not (tmp_path / "host-marker").exists()


# Loading happens in the runner, the same code on every backend: these run once, on bwrap.
def test_tensors_saved_on_cuda_load_on_the_cpu(make_submission, assignment, settings, checkpoints,
                                               monkeypatch, tmp_path):
    import torch
    import torch.serialization

    state = torch.load(checkpoints["model.pt"], weights_only=True)
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    monkeypatch.undo()
    with pytest.raises(RuntimeError, match="CUDA"):  # what a student's plain load would hit here
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)

    cuda = grade(make_submission(model__pt=buffer.getvalue()), mynet_only(assignment), settings)
    plain = grade(make_submission(), mynet_only(assignment), settings)
    assert cuda.part("mynet").status is Status.GRADED, cuda.part("mynet").message
    assert cuda.part("mynet").metrics == plain.part("mynet").metrics


def test_a_file_that_is_not_a_checkpoint_gets_a_clear_message(make_submission, assignment, settings):
    result = grade(make_submission(model__pt=b"these are not the weights you are looking for\n"),
                   mynet_only(assignment), settings)
    message = result.part("mynet").message
    assert "model.pt is not a PyTorch checkpoint torch.load can read" in message, message
    assert "torch.save(model.state_dict(), 'model.pt')" in message


def test_a_checkpoint_over_the_size_cap_is_refused_before_loading(make_submission, assignment,
                                                                   settings, checkpoints):
    size = checkpoints["model.pt"].stat().st_size
    result = grade(make_submission(), mynet_only(assignment, checkpoint_bytes=size - 1), settings)
    message = result.part("mynet").message
    assert "over the 0 MiB limit" in message or "MiB limit" in message, message
    assert "save only the model's state_dict()" in message
