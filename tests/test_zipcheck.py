"""One zip-entry rule: every zip intake refuses for an entry, batch discovery refuses for the same reason.

Each case is a real zip with one bad entry. It is fed to ``intake`` as a student's upload and
to ``unpack_outer`` as an instructor's download of everyone's uploads; both refusals must
name the entry and carry the same ``EntryProblem.problem`` wording that ``check_entries``
gives, so a check dropped from either caller (or added to only one) fails here.
"""

from __future__ import annotations

import dataclasses
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from grader.batch import BatchError
from grader.batch.discover import UnpackCaps, unpack_outer
from grader.config import Assignment, load_assignment
from grader.errors import SubmissionInvalid
from grader.intake import intake
from grader.zipcheck import check_entries
from tests.factories import make_zip
from tests.test_intake import central_header, handmade_zip, local_header, patch_headers, replace_bytes

ENTRY_BYTES = 6 * 2**20
RATIO = 200
OK = {"numpy_nn.py": b"import numpy as np\n"}


def _special(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


def overlapping(path: Path) -> Path:
    inner = b"print('hi')\n" * 10
    b_record = local_header(b"b.py", inner) + inner
    body = local_header(b"a.py", b_record) + b_record
    return handmade_zip(path, body, [central_header(b"a.py", b_record, 0),
                                     central_header(b"b.py", inner, 34)])


def shared_offset(path: Path) -> Path:
    inner = b"print('hi')\n" * 10
    body = local_header(b"a.py", inner) + inner
    return handmade_zip(path, body, [central_header(b"a.py", inner, 0),
                                     central_header(b"b.py", inner, 0)])


def method(path: Path) -> Path:
    make_zip(path, OK | {"a.py": b"x" * 50})
    patch_headers(path, "a.py", local={8: ("<H", 9)}, central={10: ("<H", 9)})
    return path


def encrypted(path: Path) -> Path:
    make_zip(path, OK | {"a.py": b"x" * 50})
    patch_headers(path, "a.py", local={6: ("<H", 0x1)}, central={8: ("<H", 0x1)})
    return path


def nul(path: Path) -> Path:
    make_zip(path, OK | {"evilZ.py": b"x"})
    replace_bytes(path, b"evilZ.py", b"evil\x00.py")
    return path


def named(name: str | zipfile.ZipInfo, data: bytes = b"boom") -> Callable[[Path], Path]:
    return lambda path: make_zip(path, [*OK.items(), (name, data)])


CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "overlapping": (overlapping, "share the same bytes"),
    "shared-offset": (shared_offset, "share the same bytes"),
    "compression-method": (method, "compression method (number 9)"),
    "encrypted": (encrypted, "is encrypted"),
    "nul": (nul, "NUL character"),
    "control": (named("evil\x07.py"), "control or invisible character"),
    "absolute": (named("/etc/cron.d/evil"), "absolute path"),
    "drive": (named("C:/Windows/evil.py"), "absolute path"),
    "dotdot": (named("sub/../../evil.py"), "'..'"),
    "backslash": (named("sub\\evil.py"), "backslash"),
    "symlink": (named(_special("a.py", stat.S_IFLNK), b"/etc/passwd"), "symbolic link"),
    "fifo": (named(_special("a.py", stat.S_IFIFO)), "not a regular file"),
    "too-big": (named("big.npy", b"w" * (ENTRY_BYTES + 1)), "over the limit of 6,291,456 bytes per file"),
    "zip-bomb": (named("zeros.npy", bytes(5 * 2**20)), "more than the 200:1 allowed"),
}


@pytest.fixture(scope="module")
def spec() -> Assignment:
    real = load_assignment()
    return dataclasses.replace(
        real, limits=dataclasses.replace(real.limits, entry_bytes=ENTRY_BYTES, max_ratio=RATIO)
    )


@pytest.mark.parametrize(("build", "needle"), CASES.values(), ids=CASES.keys())
def test_intake_and_discovery_refuse_the_same_entry_for_the_same_reason(
    tmp_path: Path, spec: Assignment, build: Callable[[Path], Path], needle: str
) -> None:
    archive = build(tmp_path / "up.zip")
    with zipfile.ZipFile(archive) as zf:
        problem = check_entries(archive, zf, entry_bytes=ENTRY_BYTES, max_ratio=RATIO)
    assert problem is not None
    assert needle in problem.problem

    with pytest.raises(SubmissionInvalid) as student:
        intake(archive, tmp_path / "student", assignment=spec)
    caps = UnpackCaps(entry_bytes=ENTRY_BYTES, ratio=RATIO)
    with pytest.raises(BatchError) as batch:
        unpack_outer(archive, tmp_path / "batch", caps=caps)

    for message in (student.value.message, str(batch.value)):
        assert f"{problem.subject} {problem.problem}" in message, message
    assert not (tmp_path / "student").exists()
    assert not (tmp_path / "batch").exists()


def test_a_clean_zip_passes_both(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "up.zip", OK | {"sub/ok.py": b"x", "sub/": b""})
    with zipfile.ZipFile(archive) as zf:
        assert check_entries(archive, zf, entry_bytes=ENTRY_BYTES, max_ratio=RATIO) is None
    unpack_outer(archive, tmp_path / "batch", caps=UnpackCaps(entry_bytes=ENTRY_BYTES, ratio=RATIO))
    assert (tmp_path / "batch" / "sub" / "ok.py").read_bytes() == b"x"
