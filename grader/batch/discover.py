"""Finding submissions and their student ids in a folder, or in one zip of such a folder.

Layouts (a zip of either one is unpacked first; a single folder wrapping everything inside
that zip is stepped into):

    DIR/alice.zip  DIR/bob.zip                 a folder of zips: the id is the file's stem
    DIR/alice/submission.zip                   one folder per student, as learning platforms
    DIR/bob/model.py  DIR/bob/model.pt …       export them: the id is the folder's name; a
                                               folder without a zip has its files zipped up

Student ids: the whole stem or folder name, or, with ``--id-pattern``, the named group
``id`` of the first match of the pattern in it (``re.search``); a name the pattern does not
match becomes a row saying so, and is not graded.

The outer zip is the instructor's download, but its content comes from students, so its
entries pass the same ``grader.zipcheck`` rule as an upload at intake (no overlapping
entries, unsafe names, links or special files, encryption, unknown compression methods,
oversized or over-compressed entries), plus caps on the entry count and the total; any of
these refuses the whole zip with the entry named.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from grader.batch import BatchError
from grader.config import Limits
from grader.zipcheck import check_entries, show_name, size_text

CHUNK = 1 << 20
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini", "__pycache__"})
LOOSE_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so the same loose files give the same SHA-256


@dataclass(frozen=True)
class Found:
    """One submission: whose it is, where it came from, the zip to grade (or why there is none)."""

    student: str
    label: str  # the source as the instructor knows it: "bob.zip", "bob/", "bob/sub.zip"
    archive: Path | None
    mtime: float
    problem: str = ""  # set: refused before grading (empty folder, name not matching the pattern)


@dataclass(frozen=True)
class UnpackCaps:
    """Limits for unpacking an outer zip; sizes in bytes."""

    entries: int = 100_000
    entry_bytes: int = 200 * 2**20
    total_bytes: int = 20 * 2**30
    ratio: int = 200

    @classmethod
    def for_limits(cls, limits: Limits, *, total_bytes: int | None = None) -> UnpackCaps:
        """One entry may be as large as an upload (a student's zip) or a file in it (loose files)."""
        return cls(
            entry_bytes=max(limits.upload_bytes, limits.entry_bytes),
            total_bytes=total_bytes if total_bytes is not None else cls.total_bytes,
            ratio=limits.max_ratio,
        )


@dataclass
class Discovery:
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was skipped or stepped into


# --------------------------------------------------------------------------- student ids


def compile_id_pattern(text: str | None) -> re.Pattern[str] | None:
    """The ``--id-pattern`` regex, checked: it must compile and have a group named ``id``."""
    if text is None:
        return None
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise BatchError(f"--id-pattern {text!r} is not a valid regular expression: {exc}") from None
    if "id" not in pattern.groupindex:
        raise BatchError(
            f"--id-pattern {text!r} has no group named 'id'; mark the id like this: "
            r"'_(?P<id>\d+)_assignsubmission'"
        )
    return pattern


def student_id(name: str, pattern: re.Pattern[str] | None) -> str | None:
    """The student id in a stem or folder name; None when the pattern does not match."""
    if pattern is None:
        return name
    match = pattern.search(name)
    value = match.group("id") if match else None
    return value.strip() if value and value.strip() else None


# --------------------------------------------------------------------------- discovery


def _is_junk(name: str) -> bool:
    return name in JUNK_NAMES or name.startswith(".")


def discover(
    source: Path,
    *,
    work_dir: Path,
    limits: Limits,
    id_pattern: re.Pattern[str] | None = None,
    exclude: tuple[Path, ...] = (),
    caps: UnpackCaps | None = None,
) -> Discovery:
    """Every submission under ``source`` (a folder, or a zip of one); BatchError if none."""
    if not source.exists():
        raise BatchError(f"{source}: no such file or folder")
    result = Discovery()
    if source.is_file():
        if not zipfile.is_zipfile(source):
            raise BatchError(f"{source} is neither a folder nor a zip file")
        root = work_dir / "unpacked"
        unpack_outer(source, root, caps=caps or UnpackCaps.for_limits(limits))
        root = _unwrap(root, result.notes)
    elif source.is_dir():
        root = source
    else:
        raise BatchError(f"{source} is neither a folder nor a zip file")
    excluded = {p.resolve() for p in exclude}
    others: list[str] = []
    loose_dir = work_dir / "loose"
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if _is_junk(entry.name) or entry.resolve() in excluded:
            continue
        if entry.is_dir():
            result.found.extend(_student_folder(entry, loose_dir, limits, id_pattern))
        elif entry.is_file() and entry.suffix.lower() == ".zip":
            result.found.append(_found(entry.stem, entry.name, entry, id_pattern))
        else:
            others.append(entry.name)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        result.notes.append(f"ignored {len(others)} files that are neither zips nor folders: {shown}")
    if not result.found:
        looks_single = any(name.endswith((".py", ".pt", ".safetensors")) for name in others)
        hint = (" It looks like one student's files: grade them with `grader grade ZIP`."
                if looks_single else "")
        raise BatchError(
            f"found no submissions in {source}: expected zip files, or one folder per student.{hint}"
        )
    return result


def _found(name: str, label: str, archive: Path, pattern: re.Pattern[str] | None) -> Found:
    mtime = archive.stat().st_mtime
    student = student_id(name, pattern)
    if student is None:
        return Found(name, label, None, mtime, _no_match(pattern))
    return Found(student, label, archive, mtime)


def _no_match(pattern: re.Pattern[str] | None) -> str:
    shown = pattern.pattern if pattern else ""
    return f"the name does not match --id-pattern {shown!r}, so the student is unknown; not graded."


def _student_folder(
    folder: Path, loose_dir: Path, limits: Limits, pattern: re.Pattern[str] | None
) -> list[Found]:
    """The zip(s) in one student's folder, or its loose files zipped up."""
    label = folder.name + "/"
    student = student_id(folder.name, pattern)
    mtime = folder.stat().st_mtime
    if student is None:
        return [Found(folder.name, label, None, mtime, _no_match(pattern))]
    zips = sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() == ".zip" and not _is_junk(p.name))
    if zips:
        return [Found(student, f"{folder.name}/{z.name}", z, z.stat().st_mtime) for z in zips]
    files, problem = _loose_files(folder, limits)
    if problem:
        return [Found(student, label, None, mtime, problem)]
    loose_dir.mkdir(parents=True, exist_ok=True)
    archive = loose_dir / f"{hashlib.sha256(os.fsencode(folder.name)).hexdigest()[:24]}.zip"
    zip_files(folder, files, archive)
    return [Found(student, label, archive, max(f.stat().st_mtime for f in files))]


def _loose_files(folder: Path, limits: Limits) -> tuple[list[Path], str]:
    """The files of a folder without a zip (sorted), or why they cannot be zipped up."""
    files: list[Path] = []
    total = 0
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _is_junk(d))
        for name in [*dirs, *sorted(n for n in names if not _is_junk(n))]:
            path = Path(top, name)
            if path.is_symlink():
                rel = path.relative_to(folder).as_posix()
                return [], f"the folder holds a symbolic link, {rel!r}; replace it by the real file."
        for name in sorted(names):
            path = Path(top, name)
            if _is_junk(name):
                continue
            if not stat.S_ISREG(path.lstat().st_mode):
                return [], f"{path.relative_to(folder).as_posix()!r} is not a regular file."
            total += path.lstat().st_size
            files.append(path)
    if not files:
        return [], "the folder is empty: the student handed in nothing."
    if total > limits.total_bytes:
        return [], (f"the files in the folder add up to {size_text(total)}, over the limit of "
                    f"{size_text(limits.total_bytes)}.")
    return files, ""


def zip_files(folder: Path, files: list[Path], dest: Path) -> Path:
    """Zip ``files`` (under ``folder``) with fixed times and modes: same files, same bytes."""
    # Level 1: checkpoints hardly compress, and the time is better spent grading.
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted(files, key=lambda p: p.relative_to(folder).as_posix()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=LOOSE_ZIP_TIME)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as out:
                shutil.copyfileobj(src, out, CHUNK)
    return dest


def _unwrap(root: Path, notes: list[str]) -> Path:
    """Step into a single folder that wraps the whole content of an outer zip."""
    entries = [p for p in root.iterdir() if not _is_junk(p.name)]
    if len(entries) != 1 or not entries[0].is_dir():
        return root
    inner = [p for p in entries[0].iterdir() if not _is_junk(p.name)]
    zips = [p for p in inner if p.is_file() and p.suffix.lower() == ".zip"]
    if any(p.is_dir() for p in inner) or len(zips) > 1:
        notes.append(f"the zip holds one folder, {entries[0].name}/; reading the submissions in it")
        return entries[0]
    return root


# --------------------------------------------------------------------------- outer zip


def _refuse(archive: Path, name: str, problem: str) -> BatchError:
    return BatchError(f"{archive.name} is refused: its entry {show_name(name)} {problem}; "
                      "nothing was graded. Unpack it yourself and check it, or download it again.")


def unpack_outer(archive: Path, dest: Path, *, caps: UnpackCaps) -> None:
    """Unpack the instructor's zip of submissions into ``dest`` (which must not exist), or refuse it."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        raise BatchError(f"{archive.name} is not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > caps.entries:
            raise BatchError(f"{archive.name} is refused: it has {len(infos)} entries, more than "
                             f"{caps.entries}; nothing was graded.")
        kept = _check_outer(archive, zf, caps)
        dest.mkdir(parents=True)
        try:
            for info in kept:
                _extract_one(zf, info, dest, archive)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise


def _check_outer(archive: Path, zf: zipfile.ZipFile, caps: UnpackCaps) -> list[zipfile.ZipInfo]:
    """The entries to unpack: zipcheck's rule for every entry, then junk, duplicates and the total."""
    problem = check_entries(archive, zf, entry_bytes=caps.entry_bytes, max_ratio=caps.ratio)
    if problem:
        raise BatchError(f"{archive.name} is refused: its {problem.subject} {problem.problem}; "
                         "nothing was graded. Unpack it yourself and check it, or download it again.")
    kept: list[zipfile.ZipInfo] = []
    seen: set[str] = set()
    total = 0
    for info in zf.infolist():
        name = info.orig_filename
        parts = name.removesuffix("/").split("/")
        if any(_is_junk(part) for part in parts) or parts[-1].startswith("._"):
            continue
        if name.endswith("/") or stat.S_ISDIR(info.external_attr >> 16):
            kept.append(info)  # made even when empty: an empty student folder is a row too
            continue
        if name in seen:
            raise _refuse(archive, name, "appears twice")
        seen.add(name)
        total += info.file_size
        if total > caps.total_bytes:
            raise BatchError(
                f"{archive.name} is refused: it unpacks to more than {size_text(caps.total_bytes)} "
                "(raise --max-unpacked-gib if that is expected); nothing was graded.")
        kept.append(info)
    return kept


def _extract_one(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, archive: Path) -> None:
    target = dest.joinpath(*info.filename.removesuffix("/").split("/"))
    if info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16):
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _refuse(archive, info.filename, f"cannot be unpacked ({exc.strerror})") from None
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise _refuse(archive, info.filename, f"cannot be unpacked ({exc.strerror})") from None
    written = 0
    try:
        with os.fdopen(fd, "wb") as out, zf.open(info) as src:
            # zipfile stops at the declared size and checks the CRC: a lying entry cannot grow.
            while chunk := src.read(CHUNK):
                written += len(chunk)
                out.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as exc:
        raise _refuse(archive, info.filename, f"does not read back correctly ({exc})") from None
    with contextlib.suppress(OSError, ValueError, OverflowError):
        when = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(target, (when, when))  # "newest" among one student's zips means this time
