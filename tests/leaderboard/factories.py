"""Plain keyword factories for the web service's tests: results, zips, recorded submissions."""

from __future__ import annotations

import gzip
import io
import zipfile
from datetime import datetime
from pathlib import Path
from typing import Any

from grader.config import Assignment
from grader.result import GradeResult
from leaderboard.claims import claim, record_result
from leaderboard.db import session_scope
from leaderboard.models import AssignmentRow
from leaderboard.ranking import ensure_assignment
from leaderboard.settings import WebSettings
from leaderboard.uploads import accept_upload, store_archive

SPLITS = ("ORIG", "AUG", "NEW")
WEIGHTS = {"ORIG": 0.6, "AUG": 0.3, "NEW": 0.1}


def split_metrics(orig: float, aug: float, new: float) -> dict[str, float]:
    weighted = WEIGHTS["ORIG"] * orig + WEIGHTS["AUG"] * aug + WEIGHTS["NEW"] * new
    return {"ORIG": orig, "AUG": aug, "NEW": new, "weighted": weighted}


def result_data(
    *,
    status: str = "graded",
    final: tuple[float, float, float] = (0.8, 0.7, 0.6),
    public: tuple[float, float, float] | None = None,
    private: tuple[float, float, float] | None = None,
    mynet: float = 0.85,
    layer_failures: int = 0,
    message: str = "",
    detail: str = "",
) -> dict[str, Any]:
    """A result in the grading engine's JSON form (parsed back with ``GradeResult.from_dict``)."""
    if status != "graded":
        return {
            "status": status,
            "score": 0.0,
            "max_score": 100.0,
            "passed": False,
            "message": message or f"The submission ended as {status}.",
            "parts": [],
            "detail": detail,
        }
    fm = split_metrics(*final)
    pm = split_metrics(*(public or final))
    tests = [
        {
            "name": f"Linear.forward: case {i}",
            "passed": i >= layer_failures,
            "message": "" if i >= layer_failures else "expected shape (2, 2), got (2, 3)",
        }
        for i in range(4)
    ]
    np_score = 40.0 * sum(t["passed"] for t in tests) / len(tests)
    parts = [
        {
            "name": "numpy_nn",
            "status": "graded",
            "score": np_score,
            "max_score": 40.0,
            "passed": layer_failures == 0,
            "message": "",
            "metrics": {},
            "tests": tests,
            "detail": "staff-only numpy detail",
        },
        {
            "name": "mynet",
            "status": "graded",
            "score": 30.0 if mynet > 0.75 else 0.0,
            "max_score": 30.0,
            "passed": mynet > 0.75,
            "message": f"accuracy {mynet:.1%}",
            "metrics": {"accuracy": mynet},
            "tests": [],
        },
        {
            "name": "finetune",
            "status": "graded",
            "score": 30.0 if fm["weighted"] > 0.7 else 0.0,
            "max_score": 30.0,
            "passed": fm["weighted"] > 0.7,
            "message": "",
            "metrics": fm,
            "public_metrics": pm,
            "private_metrics": split_metrics(*private) if private else {},
            "tests": [
                {
                    "name": f"FinetuneNet accuracy on {k}",
                    "passed": fm[k] > 0.7,
                    "message": f"{fm[k]:.2%}",
                }
                for k in SPLITS
            ],
            "detail": "staff-only finetune",
        },
    ]
    score = sum(p["score"] for p in parts)
    return {
        "status": "graded",
        "score": score,
        "max_score": 100.0,
        "passed": all(p["passed"] for p in parts),
        "message": message,
        "parts": parts,
        "runtime_s": 12.5,
        "detail": detail,
    }


def tiny_zip(files: dict[str, bytes] | None = None) -> bytes:
    """A small zip in memory (default: one file, an invalid submission)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in (files or {"readme.txt": b"not a submission"}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


PLACEHOLDERS = {
    "numpy_nn.py": b"# placeholder\n",
    "pytorch_cnn.py": b"# placeholder\n",
    "model.pt": b"not a checkpoint",
    "finetuned.pt": b"not a checkpoint",
}


def shaped_zip() -> bytes:
    """The cnn lab's required files at the top level with placeholder contents: a zip the
    upload's structure check takes (queued), which grading then fails."""
    return tiny_zip(PLACEHOLDERS)


def late_invalid_zip() -> bytes:
    """A zip the upload takes (its directory is in order) that the worker's intake refuses as
    ``invalid`` once it reads the data: ``pytorch_cnn.py`` is itself a gzip archive."""
    return tiny_zip({**PLACEHOLDERS, "pytorch_cnn.py": gzip.compress(b"print('hi')\n")})


def folder_zip(files: dict[str, bytes] | None = None, folder: str = "submission") -> bytes:
    """The required files zipped with their folder around them (refused at upload)."""
    return tiny_zip({f"{folder}/{name}": data for name, data in (files or PLACEHOLDERS).items()})


FIXTURES = Path(__file__).resolve().parent / "fixtures"
SOLUTION = Path(__file__).resolve().parents[2] / "hidden_tests" / "cnn" / "solution"


def slowed(seconds: float) -> dict[str, bytes]:
    """The files of ``tiny_good_zip`` with each part held ``seconds`` long (at the layers'
    import's end and in each net's constructor): slow enough to watch every part run."""
    pause = f"import time as _time\n\n_time.sleep({seconds})\n".encode()
    nets = (FIXTURES / "tiny_pytorch_cnn.py").read_bytes() + f"""

import time as _time


def _held(cls):
    original = cls.__init__

    def __init__(self, *args, **kwargs):
        _time.sleep({seconds})
        original(self, *args, **kwargs)

    cls.__init__ = __init__


_held(MyNet)
_held(FinetuneNet)
""".encode()
    return {"numpy_nn.py": (SOLUTION / "numpy_nn.py").read_bytes() + b"\n" + pause, "pytorch_cnn.py": nets}


def tiny_good_zip(seed: int = 0, *, slow_s: float = 0.0) -> bytes:
    """The reference NumPy layers with tiny, untrained (seeded) nets: graded in seconds
    (each part ``slow_s`` longer, when given)."""
    import importlib.util

    import torch

    source = FIXTURES / "tiny_pytorch_cnn.py"
    spec = importlib.util.spec_from_file_location("tiny_pytorch_cnn", source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(seed)

    def state(net: Any) -> bytes:
        buffer = io.BytesIO()
        torch.save(net.state_dict(), buffer)
        return buffer.getvalue()

    files = {
        "numpy_nn.py": (SOLUTION / "numpy_nn.py").read_bytes(),
        "pytorch_cnn.py": source.read_bytes(),
        "model.pt": state(module.MyNet()),
        "finetuned.pt": state(module.FinetuneNet()),
    }
    if slow_s:
        files.update(slowed(slow_s))
    return tiny_zip(files)


def add_graded(
    settings: WebSettings,
    spec: Assignment,
    *,
    student_id: int,
    data: dict[str, Any],
    engine: Any,
    at: datetime | None = None,
    tmp: Path,
) -> int:
    """Record an upload and its result through the real crud path (no worker, no sandbox)."""
    with session_scope(engine) as session:
        row = ensure_assignment(session, spec=spec)
        assignment = session.get(AssignmentRow, row.id)
        archive = store_archive(io.BytesIO(tiny_zip()), upload_dir=settings.upload_dir, max_bytes=1 << 20)
        sub = accept_upload(
            session,
            settings=settings,
            spec=spec,
            assignment=assignment,
            student_id=student_id,
            archive=archive,
            filename="submission.zip",
            now=at,
        )
        sub_id = sub.id
    taken = claim(engine, submission_id=sub_id, worker="test", max_attempts=3)
    assert taken is not None
    assert record_result(engine, claim=taken, result=GradeResult.from_dict(data), spec=spec, worker="test")
    return sub_id
