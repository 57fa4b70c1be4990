"""Intake: real zips, some patched byte by byte, each refused with a message that names it."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import stat
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from grader.config import Assignment, load_assignment
from grader.errors import GraderFault, SubmissionInvalid
from grader.intake import Submission, check_archive, intake, sha256_file
from tests.factories import make_zip

REQUIRED = {
    "numpy_nn.py": b"import numpy as np\n\n\nclass Linear:\n    pass\n",
    "pytorch_cnn.py": b"import torch\n\n\nclass MyNet(torch.nn.Module):\n    pass\n",
    # torch.save writes zips, so real checkpoints start with PK\x03\x04 too.
    "model.pt": b"PK\x03\x04 stands in for a torch checkpoint" + bytes(range(256)),
    "finetuned.pt": b"PK\x03\x04 another checkpoint" + bytes(range(255, -1, -1)),
}
REPORT = {
    "cnn.ipynb": b'{"cells": []}',
    "numpy_nn_training.png": b"\x89PNG\r\n\x1a\n numpy loss",
    "numpy_nn_classification.png": b"\x89PNG\r\n\x1a\n numpy classification",
    "pytorch_fcnet_training.png": b"\x89PNG\r\n\x1a\n fcnet",
    "pytorch_cnn_training.png": b"\x89PNG\r\n\x1a\n cnn",
}
GOOD = {**REQUIRED, **REPORT}


@pytest.fixture(scope="module")
def spec() -> Assignment:
    return load_assignment()


def with_limits(assignment: Assignment, **limits: int) -> Assignment:
    """The real spec with some limits made small."""
    return dataclasses.replace(assignment, limits=dataclasses.replace(assignment.limits, **limits))


def refused(archive: Path, dest: Path, assignment: Assignment, *needles: str) -> SubmissionInvalid:
    """Run intake, expect a refusal whose one-sentence message holds every needle."""
    with pytest.raises(SubmissionInvalid) as info:
        intake(archive, dest, assignment=assignment)
    exc = info.value
    assert exc.status == "invalid"
    assert exc.message.endswith(".")
    assert "\n" not in exc.message
    for needle in needles:
        assert needle in exc.message, exc.message
    assert exc.detail
    assert not dest.exists()
    # The upload's check is the same code: it refuses with the same sentence, or (for what
    # only the entries' data shows) lets the zip through to the worker's intake.
    assert upload_check(archive, assignment) in ("", exc.message)
    return exc


def upload_check(archive: Path, assignment: Assignment) -> str:
    """What the upload says of ``archive`` (``check_archive``): its refusal, or "" if taken."""
    try:
        check_archive(archive, assignment)
    except SubmissionInvalid as exc:
        return exc.message if exc.detail else "(a refusal without detail)"
    return ""


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def replace_bytes(path: Path, old: bytes, new: bytes, count: int = 2) -> None:
    """Swap raw bytes in a file (a name sits in both the local and the central header)."""
    data = path.read_bytes()
    assert data.count(old) == count
    path.write_bytes(data.replace(old, new))


def patch_headers(path: Path, name: str, *, local: dict[int, Any], central: dict[int, Any]) -> None:
    """Overwrite fields of one entry: {offset in header: int (2 or 4 bytes as given) or bytes}."""
    with zipfile.ZipFile(path) as zf:
        local_at = zf.getinfo(name).header_offset
        central_at = zf.start_dir
        data = bytearray(path.read_bytes())
        for info in zf.infolist():
            if info.filename == name:
                break
            name_len = len(info.orig_filename.encode())
            central_at += 46 + name_len + len(info.extra) + len(info.comment)
    for base, fields in ((local_at, local), (central_at, central)):
        for offset, value in fields.items():
            raw = value if isinstance(value, bytes) else struct.pack(value[0], value[1])
            data[base + offset : base + offset + len(raw)] = raw
    path.write_bytes(bytes(data))


def local_header(name: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data)
    return struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(name), 0
    ) + name


def central_header(name: bytes, data: bytes, offset: int) -> bytes:
    crc = zlib.crc32(data)
    return struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50, 20, 20, 0, 0, 0, 0x21, crc, len(data), len(data), len(name), 0, 0, 0, 0, 0,
        offset,
    ) + name


def handmade_zip(path: Path, body: bytes, centrals: list[bytes]) -> Path:
    """Stored entries written by hand: local records, then the central directory as given."""
    directory = b"".join(centrals)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(centrals), len(centrals), len(directory), len(body), 0
    )
    path.write_bytes(body + directory + end)
    return path


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# --------------------------------------------------------------------------- accepted zips


def test_good_zip_extracts_exactly_its_files(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD)
    dest = tmp_path / "out" / "submission"
    sub = intake(archive, dest, assignment=spec)
    assert isinstance(sub, Submission)
    assert sub.root == dest
    assert sub.files == tuple(sorted(GOOD))
    assert sub.warnings == ()
    assert sub.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert sorted(p.name for p in dest.iterdir()) == sorted(GOOD)
    for name, data in GOOD.items():
        assert (dest / name).read_bytes() == data
        assert stat.S_IMODE((dest / name).stat().st_mode) == 0o644
    assert stat.S_IMODE(dest.stat().st_mode) == 0o755


def test_sha256_file_is_the_hash_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "blob"
    path.write_bytes(b"abc" * 1_000_000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


def test_existing_empty_dest_is_used(tmp_path: Path, spec: Assignment) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    sub = intake(make_zip(tmp_path / "up.zip", GOOD), dest, assignment=spec)
    assert sub.files == tuple(sorted(GOOD))


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_other_standard_compression_methods(
    tmp_path: Path, spec: Assignment, compression: int
) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD, compression=compression)
    sub = intake(archive, tmp_path / "out", assignment=spec)
    assert (tmp_path / "out" / "numpy_nn.py").read_bytes() == GOOD["numpy_nn.py"]
    assert len(sub.files) == len(GOOD)


def test_safetensors_stands_in_for_checkpoint(tmp_path: Path, spec: Assignment) -> None:
    files = {k: v for k, v in GOOD.items() if k != "model.pt"} | {"model.safetensors": b"{}"}
    sub = intake(make_zip(tmp_path / "up.zip", files), tmp_path / "out", assignment=spec)
    assert "model.safetensors" in sub.files


def test_extra_helper_module_is_kept(tmp_path: Path, spec: Assignment) -> None:
    files = GOOD | {"helpers_v2.py": b"X = 1\n"}
    sub = intake(make_zip(tmp_path / "up.zip", files), tmp_path / "out", assignment=spec)
    assert "helpers_v2.py" in sub.files


def test_missing_report_files_only_warn(tmp_path: Path, spec: Assignment) -> None:
    sub = intake(make_zip(tmp_path / "up.zip", REQUIRED), tmp_path / "out", assignment=spec)
    assert sub.files == tuple(sorted(REQUIRED))
    assert len(sub.warnings) == 1
    assert sub.warnings[0].endswith("are missing (expected for the report, not graded).")
    for name in REPORT:
        assert name in sub.warnings[0]
    partial = make_zip(tmp_path / "up2.zip", {
        k: v for k, v in GOOD.items() if k != "cnn.ipynb"})
    one = intake(partial, tmp_path / "out2", assignment=spec)
    assert one.warnings == ("cnn.ipynb is missing (expected for the report, not graded).",)


def test_junk_is_skipped_with_a_warning(tmp_path: Path, spec: Assignment) -> None:
    junk = {
        "__MACOSX/": b"",
        "__MACOSX/._numpy_nn.py": b"\x00\x05\x16\x07",
        ".DS_Store": b"\x00\x00\x00\x01Bud1",
        "__pycache__/numpy_nn.cpython-311.pyc": b"\xa7\r\r\n",
        ".ipynb_checkpoints/cnn-checkpoint.ipynb": b"{}",
        "._model.pt": b"\x00\x05\x16\x07",
    }
    sub = intake(make_zip(tmp_path / "up.zip", GOOD | junk), tmp_path / "out", assignment=spec)
    assert sub.files == tuple(sorted(GOOD))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(GOOD)
    assert len(sub.warnings) == 1
    assert "Skipped 5 entries" in sub.warnings[0]


def test_directory_entries_are_ignored(tmp_path: Path, spec: Assignment) -> None:
    sub = intake(make_zip(tmp_path / "up.zip", GOOD | {"empty/": b""}), tmp_path / "out",
                 assignment=spec)
    assert sub.files == tuple(sorted(GOOD))


def test_small_entry_compressing_well_is_allowed(tmp_path: Path, spec: Assignment) -> None:
    files = GOOD | {"zeros.npy": bytes(512 * 1024)}  # over 200:1, but under 1 MiB
    sub = intake(make_zip(tmp_path / "up.zip", files), tmp_path / "out", assignment=spec)
    assert (tmp_path / "out" / "zeros.npy").stat().st_size == 512 * 1024
    assert "zeros.npy" in sub.files


# --------------------------------------------------------------------------- the archive itself


def test_upload_over_the_limit(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD)
    small = with_limits(spec, upload_bytes=archive.stat().st_size - 1)
    refused(archive, tmp_path / "out", small, "over the limit", "upload")


def tar_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("numpy_nn.py")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["empty", "tar", "text", "truncated", "bad central directory"])
def test_not_a_readable_zip(tmp_path: Path, spec: Assignment, kind: str) -> None:
    archive = tmp_path / "up.zip"
    if kind == "empty":
        archive.write_bytes(b"")
    elif kind == "tar":
        archive.write_bytes(tar_bytes())
    elif kind == "text":
        archive.write_text("def forward(x):\n    return x\n")
    else:
        make_zip(archive, GOOD)
        data = archive.read_bytes()
        if kind == "truncated":
            archive.write_bytes(data[: len(data) // 2])
        else:
            archive.write_bytes(data.replace(b"PK\x01\x02", b"PK\x01\x09", 1))
    needle = "empty" if kind == "empty" else "not a readable zip"
    refused(archive, tmp_path / "out", spec, needle)


def test_too_many_entries(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD)
    refused(archive, tmp_path / "out", with_limits(spec, max_entries=len(GOOD) - 1),
            f"{len(GOOD)} entries", f"{len(GOOD) - 1} allowed")


def test_entry_declared_over_entry_limit(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"weights.npy": b"w" * 2000})
    refused(archive, tmp_path / "out", with_limits(spec, entry_bytes=1000),
            "'weights.npy'", "over the limit", "per file")


def test_total_declared_over_total_limit(tmp_path: Path, spec: Assignment) -> None:
    files = GOOD | {f"part{i}.npy": b"p" * 900 for i in range(4)}
    refused(make_zip(tmp_path / "up.zip", files), tmp_path / "out",
            with_limits(spec, entry_bytes=1000, total_bytes=3000), "add up to", "over the limit")


def test_high_ratio_zip_bomb(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"zeros.npy": bytes(5 * 2**20)})
    refused(archive, tmp_path / "out", spec, "'zeros.npy'", "200:1", "zip bomb")


@pytest.mark.parametrize(
    ("declared", "entry_bytes", "needle"),
    [
        # the real 5000 bytes are over entry_bytes too: reading stops at the declared size
        (100, 1000, "holds more data than the zip declares"),
        (6000, 10_000, "does not read back correctly"),
    ],
    ids=["declares-less", "declares-more"],
)
def test_declared_size_lie(
    tmp_path: Path, spec: Assignment, declared: int, entry_bytes: int, needle: str
) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"notes.txt": b"x" * 5000})
    patch_headers(archive, "notes.txt", local={}, central={24: ("<I", declared)})
    refused(archive, tmp_path / "out", with_limits(spec, entry_bytes=entry_bytes),
            "'notes.txt'", needle)


@pytest.mark.parametrize("shape", ["shared-offset", "overlapping"])
def test_overlapping_entries(tmp_path: Path, spec: Assignment, shape: str) -> None:
    inner = b"print('hi')\n" * 10
    if shape == "shared-offset":
        body = local_header(b"a.py", inner) + inner
        centrals = [central_header(b"a.py", inner, 0), central_header(b"b.py", inner, 0)]
    else:  # a's data quotes b's whole record, as in non-recursive zip bombs
        b_record = local_header(b"b.py", inner) + inner
        body = local_header(b"a.py", b_record) + b_record
        centrals = [central_header(b"a.py", b_record, 0), central_header(b"b.py", inner, 34)]
    archive = handmade_zip(tmp_path / "up.zip", body, centrals)
    with zipfile.ZipFile(archive) as zf:  # zipfile opens it without complaint
        assert zf.namelist() == ["a.py", "b.py"]
        assert zf.read("a.py").endswith(inner)
    refused(archive, tmp_path / "out", spec, "'a.py' and 'b.py'", "share the same bytes")


def test_crc_error_is_damage_and_leaves_nothing(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"zz_last.txt": b"hello world"},
                       compression=zipfile.ZIP_STORED)
    replace_bytes(archive, b"hello world", b"hellO world", count=1)
    refused(archive, tmp_path / "out", spec, "damaged", "'zz_last.txt'")


def test_refusal_midway_empties_existing_dest(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"zz_last.txt": b"hello world"},
                       compression=zipfile.ZIP_STORED)
    replace_bytes(archive, b"hello world", b"hellO world", count=1)
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(SubmissionInvalid, match="damaged"):
        intake(archive, dest, assignment=spec)
    assert list(dest.iterdir()) == []


def test_nonempty_dest_is_our_fault(tmp_path: Path, spec: Assignment) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("x")
    with pytest.raises(GraderFault, match="not empty"):
        intake(make_zip(tmp_path / "up.zip", GOOD), dest, assignment=spec)
    assert [p.name for p in dest.iterdir()] == ["old.txt"]


def test_encrypted_entry(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD)
    patch_headers(archive, "model.pt", local={6: ("<H", 0x1)}, central={8: ("<H", 0x1)})
    refused(archive, tmp_path / "out", spec, "'model.pt'", "encrypted", "without a password")


def test_unknown_compression_method(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD)
    patch_headers(archive, "numpy_nn.py", local={8: ("<H", 9)}, central={10: ("<H", 9)})
    refused(archive, tmp_path / "out", spec, "'numpy_nn.py'", "compression method")


# --------------------------------------------------------------------------- names and paths


UNSAFE_PATHS = {
    "absolute": ("/etc/cron.d/evil", "absolute path"),
    "backslash-absolute": ("\\evil.py", "absolute path"),
    "drive": ("C:evil.py", "absolute path"),
    "drive-slash": ("C:/Windows/evil.py", "absolute path"),
    "dotdot": ("../evil.py", "'..'"),
    "dotdot-inside": ("sub/../../evil.py", "'..'"),
    "dot": ("./numpy_nn.py", "'..', '.' or empty part"),
    "empty-part": ("sub//evil.py", "'..', '.' or empty part"),
    "backslash": ("sub\\evil.py", "backslash"),
    "newline": ("evil\n.py", "control or invisible character"),
    "bell": ("evil\x07.py", "control or invisible character"),
    "bidi": ("evil\u202eyp.txt", "control or invisible character"),
}


@pytest.mark.parametrize(("name", "needle"), UNSAFE_PATHS.values(), ids=UNSAFE_PATHS.keys())
def test_unsafe_paths(tmp_path: Path, spec: Assignment, name: str, needle: str) -> None:
    exc = refused(make_zip(tmp_path / "up.zip", GOOD | {name: b"boom"}), tmp_path / "out", spec,
                  needle, repr(name))
    assert name not in exc.message or name.isprintable()  # control characters come escaped


@pytest.mark.parametrize("name", ["../evil.py", "../../evil.py", "a/../../../evil.py",
                                  "..\\evil.py", "ABSOLUTE"])
def test_traversal_writes_nothing_outside_dest(tmp_path: Path, spec: Assignment, name: str) -> None:
    if name == "ABSOLUTE":
        name = str(tmp_path / "evil.py")
    archive = make_zip(tmp_path / "up.zip", GOOD | {name: b"boom"})
    refused(archive, tmp_path / "a" / "b" / "dest", spec)
    assert all_files(tmp_path) == {archive}


def test_nul_in_name(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"evilZ.py": b"x"})
    replace_bytes(archive, b"evilZ.py", b"evil\x00.py")
    refused(archive, tmp_path / "out", spec, "NUL character", r"'evil\x00.py'")


def test_name_marked_utf8_that_is_not(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"é.py": b"x"})  # zipfile sets the flag
    replace_bytes(archive, "é.py".encode(), b"\xff\xfe.py")
    refused(archive, tmp_path / "out", spec, "not valid UTF-8")


def test_legacy_encoded_name_is_refused_by_name_rule(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"cafZ.py": b"x"})
    replace_bytes(archive, b"cafZ.py", b"caf\x82.py")  # cp437 0x82 reads as é
    refused(archive, tmp_path / "out", spec, "'café.py'", "rename it")


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("my file.py", "characters other than"),
        ("ünï.py", "characters other than"),
        ("semi;colon.py", "characters other than"),
        (".hidden.py", "starting with '.'"),
        ("a" * 101, "longer than 100 characters"),
    ],
)
def test_bad_file_names(tmp_path: Path, spec: Assignment, name: str, needle: str) -> None:
    exc = refused(make_zip(tmp_path / "up.zip", GOOD | {name: b"x"}), tmp_path / "out", spec,
                  needle, "rename it")
    assert len(exc.message) < 300  # long names are cut in the message


def test_duplicate_names(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", [*GOOD.items(), ("numpy_nn.py", b"second copy")])
    refused(archive, tmp_path / "out", spec, "'numpy_nn.py' twice")


def test_names_differing_only_in_case(tmp_path: Path, spec: Assignment) -> None:
    archive = make_zip(tmp_path / "up.zip", GOOD | {"Model.pt": b"x"})
    refused(archive, tmp_path / "out", spec, "'model.pt' and 'Model.pt'", "upper and lower case")


def _special(name: str, kind: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (kind | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        (stat.S_IFLNK, "symbolic link"),
        (stat.S_IFIFO, "not a regular file"),
        (stat.S_IFCHR, "not a regular file"),
        (stat.S_IFBLK, "not a regular file"),
        (stat.S_IFSOCK, "not a regular file"),
    ],
    ids=["symlink", "fifo", "char-device", "block-device", "socket"],
)
def test_special_entries(tmp_path: Path, spec: Assignment, kind: int, needle: str) -> None:
    files = [*((k, v) for k, v in GOOD.items() if k != "numpy_nn.py"),
             (_special("numpy_nn.py", kind), b"/etc/passwd")]
    refused(make_zip(tmp_path / "up.zip", files), tmp_path / "out", spec, "'numpy_nn.py'", needle)


NESTED_NAMES = ["inner.zip", "data.tar", "data.tar.gz", "a.tgz", "b.bz2", "c.xz", "d.7z", "e.rar",
                "lib.whl", "lib.jar", "UPPER.ZIP"]


@pytest.mark.parametrize("name", NESTED_NAMES)
def test_nested_archive_by_name(tmp_path: Path, spec: Assignment, name: str) -> None:
    refused(make_zip(tmp_path / "up.zip", GOOD | {name: b"not really"}), tmp_path / "out", spec,
            f"'{name}'", "another archive", "zip the files themselves")


@pytest.mark.parametrize("kind", ["zip", "gzip", "7z", "rar", "xz", "tar"])
def test_nested_archive_by_content(tmp_path: Path, spec: Assignment, kind: str) -> None:
    content = {
        "zip": zip_bytes(REQUIRED),
        "gzip": gzip.compress(b"hello"),
        "7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(32),
        "rar": b"Rar!\x1a\x07\x01\x00" + bytes(32),
        "xz": b"\xfd7zXZ\x00" + bytes(32),
        "tar": tar_bytes(),
    }[kind]
    archive = make_zip(tmp_path / "up.zip", GOOD | {"data.bin": content})
    refused(archive, tmp_path / "out", spec, "'data.bin'", f"itself an archive ({kind})")


# --------------------------------------------------------------------------- layout


def test_files_inside_a_folder(tmp_path: Path, spec: Assignment) -> None:
    files = {f"submission/{k}": v for k, v in GOOD.items()} | {"submission/": b""}
    refused(make_zip(tmp_path / "up.zip", files), tmp_path / "out", spec,
            "'submission/'", "not the folder")


def test_extra_file_in_a_subfolder(tmp_path: Path, spec: Assignment) -> None:
    refused(make_zip(tmp_path / "up.zip", GOOD | {"data/extra.npy": b"x"}), tmp_path / "out",
            spec, "'data/extra.npy'", "top level")


def test_missing_required_files_in_one_message(tmp_path: Path, spec: Assignment) -> None:
    files = {k: v for k, v in GOOD.items() if k not in ("model.pt", "finetuned.pt")}
    exc = refused(make_zip(tmp_path / "up.zip", files), tmp_path / "out", spec,
                  "The zip is missing model.pt and finetuned.pt;", "model.safetensors")
    assert "numpy_nn.py" not in exc.message


def test_the_upload_check_refuses_what_needs_no_data_and_extracts_nothing(tmp_path: Path,
                                                                         spec: Assignment) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("my notes\n")
    early = {
        "not a zip": text,
        "folder": make_zip(tmp_path / "folder.zip", {f"submission/{k}": v for k, v in GOOD.items()}),
        "missing": make_zip(tmp_path / "missing.zip", {k: v for k, v in GOOD.items() if k != "model.pt"}),
        "unsafe": make_zip(tmp_path / "unsafe.zip", GOOD | {"../evil.py": b"x"}),
        "too many": make_zip(tmp_path / "many.zip", GOOD | {f"f{i}.py": b"" for i in range(64)}),
    }
    for name, archive in early.items():
        with pytest.raises(SubmissionInvalid) as upload:
            check_archive(archive, spec)
        with pytest.raises(SubmissionInvalid) as grading:
            intake(archive, tmp_path / f"out-{name}", assignment=spec)
        assert upload.value.message == grading.value.message, name
    # What only the data shows is left to the worker's intake.
    late = make_zip(tmp_path / "late.zip", GOOD | {"data.bin": gzip.compress(b"hello")})
    assert upload_check(late, spec) == ""
    refused(late, tmp_path / "out-late", spec, "itself an archive (gzip)")
    # A good zip: the same warnings as intake's, and nothing written.
    good = make_zip(tmp_path / "good.zip", {k: v for k, v in GOOD.items() if k != "cnn.ipynb"})
    before = sorted(tmp_path.iterdir())
    warnings = check_archive(good, spec)
    assert sorted(tmp_path.iterdir()) == before
    assert warnings == list(intake(good, tmp_path / "out-good", assignment=spec).warnings)
    assert warnings == ["cnn.ipynb is missing (expected for the report, not graded)."]


def test_empty_zip_misses_everything(tmp_path: Path, spec: Assignment) -> None:
    refused(make_zip(tmp_path / "up.zip", {}), tmp_path / "out", spec,
            "missing numpy_nn.py, pytorch_cnn.py, model.pt and finetuned.pt")
