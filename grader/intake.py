"""Zip -> checked submission folder; every refusal is one sentence the student can act on.

The archive is never unpacked with ``extractall``: every check that needs only the
central directory runs first, then each kept entry is streamed in chunks with the real
bytes counted, and anything written is removed again if a later entry is refused.

Names: zipfile decodes a name as UTF-8 when the entry's UTF-8 flag is set (a name that
fails to decode makes the whole zip unreadable, refused as such) and as cp437 otherwise.
Kept names must be plain ASCII (``[A-Za-z0-9._-]+``), so a legacy-encoded name is
refused by the name rule with its cp437 reading shown, escaped.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import lzma
import os
import re
import stat
import struct
import sys
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from grader.config import Assignment, Files, Limits
from grader.errors import GraderFault, SubmissionInvalid
from grader.zipcheck import (
    REMAKE,
    EntryProblem,
    check_entries,
    damaged,
    show_name,
    sizes_text,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
MAX_NAME_CHARS = 100
NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
ARCHIVE_SUFFIXES = (
    ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".whl", ".jar", ".zst",
)
ARCHIVE_MAGIC = {
    b"PK\x03\x04": "zip",
    b"PK\x05\x06": "zip",
    b"\x1f\x8b": "gzip",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"Rar!\x1a\x07": "rar",
    b"\xfd7zXZ\x00": "xz",
}
# torch.save writes a zip, so a checkpoint rightly starts with PK\x03\x04.
ZIP_BASED_SUFFIXES = (".pt", ".pth")
JUNK_DIRS = frozenset({"__MACOSX", "__pycache__", ".ipynb_checkpoints"})
JUNK_FILES = frozenset({".DS_Store"})
READ_ERRORS = (
    zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, OSError, NotImplementedError,
)
OPEN_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError, EOFError,
    ValueError, struct.error, IndexError, OverflowError,
)


@dataclass(frozen=True)
class Submission:
    """An accepted upload: its id, the folder holding its files, and notes for the student."""

    sha256: str  # hex SHA-256 of the zip's bytes (the submission id)
    root: Path  # folder holding the extracted files, flat, at its top level
    files: tuple[str, ...]  # names extracted, sorted
    warnings: tuple[str, ...]  # e.g. "cnn.ipynb is missing (expected for the report, not graded)"


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def check_archive(archive: Path, assignment: Assignment) -> list[str]:
    """Refuse a zip whose structure intake would refuse, without extracting anything.

    The upload runs this on the stored file so that a zip that cannot be graded (not a zip,
    files inside a folder, a required file missing, an unsafe entry) is refused at once with
    intake's own sentence and never queued; ``intake`` runs the very same checks. Returns the
    warnings for the student (missing report files, skipped junk entries).
    """
    try:
        with _checked_zip(archive, assignment) as (_zf, _kept, warnings):
            return warnings
    except SubmissionInvalid as exc:
        exc.detail = f"{archive.name}: {exc.detail}"
        log.info("refused %s at upload: %s", archive, exc.detail)
        raise


def intake(archive: Path, dest: Path, *, assignment: Assignment, sha256: str = "") -> Submission:
    """Check an uploaded zip and extract its files flat into ``dest``, or refuse it.

    ``sha256``: the zip's digest when the caller has just computed it from this file (the
    worker verifies the upload's), so 40+ MiB of checkpoints are not read once more for it.
    """
    sha = sha256
    try:
        with _checked_zip(archive, assignment) as (zf, kept, warnings):
            sha = sha or sha256_file(archive)
            files = _extract(zf, kept, dest)
    except SubmissionInvalid as exc:
        if not sha and archive.is_file() and archive.stat().st_size <= assignment.limits.upload_bytes:
            sha = sha256_file(archive)
        exc.detail = f"{archive.name} sha256={sha or '(not hashed)'}: {exc.detail}"
        log.info("refused %s: %s", archive, exc.detail)
        raise
    log.info("accepted %s (sha256=%s): %d files", archive, sha, len(files))
    return Submission(sha256=sha, root=dest, files=files, warnings=tuple(warnings))


@contextlib.contextmanager
def _checked_zip(
    archive: Path, assignment: Assignment
) -> Iterator[tuple[zipfile.ZipFile, list[zipfile.ZipInfo], list[str]]]:
    """The open zip, its entries to extract and the warnings, once every check that needs no
    entry data has passed: the one sequence ``check_archive`` and ``intake`` both run."""
    limits = assignment.limits
    size = archive.stat().st_size
    if size > limits.upload_bytes:
        shown, limit = sizes_text(size, limits.upload_bytes)
        raise SubmissionInvalid(
            f"The upload is {shown}, over the limit of {limit}; leave out what grading does "
            "not need and upload again.",
            detail=f"upload {size} bytes > upload_bytes {limits.upload_bytes}",
        )
    with _open_zip(archive, size) as zf:
        kept, warnings = _check(zf, archive, assignment)
        yield zf, kept, warnings


# --------------------------------------------------------------------------- the archive


def _open_zip(archive: Path, size: int) -> zipfile.ZipFile:
    if size == 0:
        raise SubmissionInvalid(
            "The upload is empty; zip your files with a standard zip tool and upload again.",
            detail="0 bytes",
        )
    try:
        return zipfile.ZipFile(archive)
    except UnicodeDecodeError as exc:
        raise SubmissionInvalid(
            "The zip has a file name that is not valid UTF-8; rename the file using only "
            "letters, digits, '.', '_' and '-' and create the zip again.",
            detail=f"name marked UTF-8 does not decode: {exc}",
        ) from exc
    except OPEN_ERRORS as exc:
        raise SubmissionInvalid(
            "The upload is not a readable zip file (it is damaged or another format, such as "
            "tar or rar); zip your files with a standard zip tool and upload again.",
            detail=f"{type(exc).__name__}: {exc}",
        ) from exc


def _check(
    zf: zipfile.ZipFile, archive: Path, assignment: Assignment
) -> tuple[list[zipfile.ZipInfo], list[str]]:
    """Every check that needs no entry data; returns the entries to extract and warnings."""
    limits = assignment.limits
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise SubmissionInvalid(
            f"The zip has {len(infos)} entries, more than the {limits.max_entries} allowed; "
            "zip only the files the assignment asks for.",
            detail=f"{len(infos)} entries > max_entries {limits.max_entries}",
        )
    problem = check_entries(archive, zf, entry_bytes=limits.entry_bytes, max_ratio=limits.max_ratio)
    if problem:
        _refuse(problem)
    kept: list[zipfile.ZipInfo] = []
    junk: list[str] = []
    for info in infos:
        if _is_dir(info):
            continue
        if _is_junk(info.filename):
            junk.append(info.filename)
        else:
            kept.append(info)
    _check_layout(kept, assignment.files)
    for info in kept:
        _check_name(info.filename)
    _check_unique(kept)
    _check_total(kept, limits)
    warnings = _check_required({i.filename for i in kept}, assignment.files)
    if junk:
        warnings.insert(
            0,
            f"Skipped {len(junk)} entries that zip tools or editors add and grading does not "
            f"need (such as {show_name(junk[0])}).",
        )
    return kept, warnings


def _is_dir(info: zipfile.ZipInfo) -> bool:
    return info.filename.endswith("/") or stat.S_ISDIR(info.external_attr >> 16)


def _is_junk(name: str) -> bool:
    """Files that zip tools and editors add by themselves (macOS, Python, Jupyter)."""
    parts = name.split("/")
    base = parts[-1]
    return bool(JUNK_DIRS.intersection(parts[:-1])) or base in JUNK_FILES or base.startswith("._")


def _check_layout(kept: list[zipfile.ZipInfo], files: Files) -> None:
    """Every kept file must sit at the zip's top level; a wrapping folder gets its own message."""
    nested = sorted(i.filename for i in kept if "/" in i.filename)
    if not nested:
        return
    wanted = set(files.required).union(*files.alternatives.values())
    hits: dict[str, int] = {}
    for name in nested:
        folder, base = name.rsplit("/", 1)
        if base in wanted:
            hits[folder] = hits.get(folder, 0) + 1
    if hits:
        folder = max(sorted(hits), key=lambda f: hits[f])
        raise SubmissionInvalid(
            f"The zip holds your files inside the folder {show_name(folder + '/')}; zip the files "
            "themselves, not the folder, so that they sit at the top level of the zip.",
            detail=f"required files found under {folder!r}: {nested[:10]!r}",
        )
    raise SubmissionInvalid(
        f"The zip has {show_name(nested[0])} inside a folder; every file must sit at the top level "
        "of the zip, so move it there or leave it out.",
        detail=f"entries in subfolders: {nested[:10]!r}",
    )


def _check_name(name: str) -> None:
    """A kept file's name: not an archive, plain ASCII, no leading dot, not too long."""
    if name.lower().endswith(ARCHIVE_SUFFIXES):
        raise SubmissionInvalid(
            f"The zip holds another archive, {show_name(name)}; zip the files themselves instead "
            "of an archive of them.",
            detail=f"nested archive by name: {name!r}",
        )
    if len(name) > MAX_NAME_CHARS:
        reason = f"has a name longer than {MAX_NAME_CHARS} characters"
    elif name.startswith("."):
        reason = "has a name starting with '.'"
    elif not NAME_RE.fullmatch(name):
        reason = "has a name with characters other than letters, digits, '.', '_' and '-'"
    else:
        return
    raise SubmissionInvalid(
        f"The file {show_name(name)} {reason}; rename it using only letters, digits, '.', '_' and "
        "'-' and upload again.",
        detail=f"bad name {name!r}",
    )


def _check_unique(kept: list[zipfile.ZipInfo]) -> None:
    exact: set[str] = set()
    folded: dict[str, str] = {}
    for info in kept:
        name = info.filename
        if name in exact:
            raise SubmissionInvalid(
                f"The zip holds {show_name(name)} twice; {REMAKE}, with each file once.",
                detail=f"duplicate entry {name!r}",
            )
        exact.add(name)
        other = folded.setdefault(name.lower(), name)
        if other != name:
            raise SubmissionInvalid(
                f"The zip holds both {show_name(other)} and {show_name(name)}, names that differ only "
                "in upper and lower case; keep one of them and upload again.",
                detail=f"case-insensitive collision {other!r} / {name!r}",
            )


def _check_total(kept: list[zipfile.ZipInfo], limits: Limits) -> None:
    """The declared sizes of the kept files together; each alone was checked by zipcheck."""
    total = sum(info.file_size for info in kept)
    if total > limits.total_bytes:
        shown, limit = sizes_text(total, limits.total_bytes)
        raise SubmissionInvalid(
            f"The files in the zip add up to {shown} uncompressed, over the limit of {limit}; "
            "leave out what grading does not need and upload again.",
            detail=f"declared total {total} bytes > total_bytes {limits.total_bytes}",
        )


def _check_required(names: set[str], files: Files) -> list[str]:
    """Refuse if a required file is missing; a missing report file is only a warning."""
    missing = [
        need for need in files.required
        if need not in names and not names.intersection(files.alternatives.get(need, ()))
    ]
    if missing:
        hint = ", ".join(
            f"{_join(files.alternatives[need], 'or')} may stand in for {need}"
            for need in missing if files.alternatives.get(need)
        )
        raise SubmissionInvalid(
            f"The zip is missing {_join(missing)}; add {'them' if len(missing) > 1 else 'it'} "
            f"at the top level of the zip and upload again{f' ({hint})' if hint else ''}.",
            detail=f"missing {missing!r}; zip holds {sorted(names)!r}",
        )
    absent = [name for name in files.report if name not in names]
    if not absent:
        return []
    verb = "is" if len(absent) == 1 else "are"
    return [f"{_join(absent)} {verb} missing (expected for the report, not graded)."]


# --------------------------------------------------------------------------- extraction


def _extract(zf: zipfile.ZipFile, kept: list[zipfile.ZipInfo], dest: Path) -> tuple[str, ...]:
    """Stream each kept entry into ``dest``; on any failure remove what was written."""
    created = not dest.exists()
    if created:
        dest.mkdir(mode=0o755, parents=True)
    elif any(dest.iterdir()):
        raise GraderFault(f"intake needs an empty folder, and {dest} is not empty")
    os.chmod(dest, 0o755)
    written: list[Path] = []
    try:
        for info in kept:
            target = dest / info.filename
            written.append(target)
            _copy_entry(zf, info, target)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                dest.rmdir()
        raise
    return tuple(sorted(info.filename for info in kept))


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path) -> None:
    """Copy one entry, counting real bytes; stops one byte past the declared size."""
    declared = info.file_size
    # zipfile silently stops at the declared size; lift that so the real size shows. The
    # declared sizes already fit entry_bytes and total_bytes, so stopping one byte past the
    # declared size also stops at the limits.
    unbounded = copy.copy(info)
    unbounded.file_size = sys.maxsize
    try:
        src = zf.open(unbounded)
    except READ_ERRORS as exc:
        _refuse_damaged(info, f"open: {type(exc).__name__}: {exc}")
    count = 0
    with src:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, 0o644)  # whatever the umask
            while count <= declared:
                try:
                    chunk = src.read(min(CHUNK_BYTES, declared + 1 - count))
                except READ_ERRORS as exc:
                    _refuse_damaged(info, f"read: {type(exc).__name__}: {exc}")
                if not chunk:
                    break
                if count == 0:
                    _check_magic(info.filename, chunk)
                count += len(chunk)
                if count > declared:
                    raise SubmissionInvalid(
                        f"The zip is damaged or crafted: {show_name(info.filename)} holds more "
                        f"data than the zip declares for it; {REMAKE}.",
                        detail=f"{info.filename!r} declares {declared} bytes, holds more",
                    )
                out.write(chunk)
    if count != declared:
        _refuse_damaged(info, f"declares {declared} bytes, holds {count}")


def _check_magic(name: str, head: bytes) -> None:
    """Refuse content that is itself an archive, whatever its name says."""
    if name.lower().endswith(ZIP_BASED_SUFFIXES):
        return
    kind = next((k for magic, k in ARCHIVE_MAGIC.items() if head.startswith(magic)), "")
    if not kind and head[257:262] == b"ustar":
        kind = "tar"
    if kind:
        raise SubmissionInvalid(
            f"The file {show_name(name)} is itself an archive ({kind}); zip the files themselves "
            "instead of an archive of them.",
            detail=f"nested archive by content: {name!r} starts like {kind}",
        )


# --------------------------------------------------------------------------- messages


def _refuse(problem: EntryProblem) -> NoReturn:
    raise SubmissionInvalid(f"The zip {problem.subject} {problem.problem}; {problem.fix}.",
                            detail=problem.detail)


def _refuse_damaged(info: zipfile.ZipInfo, detail: str) -> NoReturn:
    _refuse(damaged(info, detail))


def _join(items: tuple[str, ...] | list[str], word: str = "and") -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {word} {items[-1]}"
