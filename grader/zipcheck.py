"""What a safe zip entry is: the one rule intake and batch discovery both apply.

A student's upload (``grader.intake``) and an instructor's download of everyone's uploads
(``grader.batch.discover``) are both zips whose content comes from students, so both refuse
the same entries for the same reasons, found here from the central directory alone, before
a byte is unpacked:

- entries sharing bytes (a header or data inside another entry's data, as in non-recursive
  zip bombs), or headers that are not where the directory says;
- unsafe names: NUL or control characters, absolute paths, backslashes, '..', '.' or empty
  parts;
- links, devices, pipes and sockets; encryption; compression methods zipfile cannot read;
- an entry declaring more than ``entry_bytes``, or compressed more than ``max_ratio``:1.

Each caller words the refusal its own way (a ``SubmissionInvalid`` for the student, a
``BatchError`` for the instructor) around the same ``EntryProblem``, so the two cannot drift.
What only one of them needs (intake's flat layout and plain-ASCII names, discovery's student
folders) stays with it.
"""

from __future__ import annotations

import re
import stat
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

RATIO_MIN_BYTES = 1 << 20  # smaller entries are not ratio-checked: tiny files compress wildly
SHOW_CHARS = 60
DRIVE_RE = re.compile(r"[A-Za-z]:")
READABLE_METHODS = frozenset(
    {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
)
LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, fixed fields, name and extra lengths
REMAKE = "create the zip again with a standard zip tool and upload it"
TOP_LEVEL = "zip the files themselves so that each sits at the top level of the zip"
RENAME = "rename the file and create the zip again"


@dataclass(frozen=True)
class EntryProblem:
    """Why an entry is refused: ``"The zip {subject} {problem}; {fix}."`` reads as a sentence."""

    names: tuple[str, ...]  # the entry, or the two entries that share bytes
    problem: str  # "is a symbolic link", "share the same bytes, as in a damaged or crafted zip"
    fix: str  # what the student does about it
    detail: str  # staff only

    @property
    def subject(self) -> str:
        """"entry 'a.py'" or "entries 'a.py' and 'b.py'", names cut and escaped."""
        if len(self.names) == 1:
            return f"entry {show_name(self.names[0])}"
        return "entries " + " and ".join(show_name(n) for n in self.names)


def check_entries(
    archive: Path, zf: zipfile.ZipFile, *, entry_bytes: int, max_ratio: int
) -> EntryProblem | None:
    """The first problem among ``zf``'s entries (read from ``archive``), or None if all are safe."""
    infos = zf.infolist()
    found = _overlap(archive, infos, int(zf.start_dir))
    if found:
        return found
    for info in infos:
        found = entry_problem(info) or size_problem(info, entry_bytes=entry_bytes, max_ratio=max_ratio)
        if found:
            return found
    return None


def entry_problem(info: zipfile.ZipInfo) -> EntryProblem | None:
    """Path safety, file type, encryption and compression method of one entry."""
    name = info.orig_filename  # zipfile cuts ``filename`` at a NUL; the original keeps it
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    parts = name.removesuffix("/").split("/")
    problem, fix = "", ""
    if "\x00" in name:
        problem, fix = "has a NUL character in its name", RENAME
    elif not name.isprintable():
        problem, fix = "has a control or invisible character in its name", RENAME
    elif name.startswith(("/", "\\")) or DRIVE_RE.match(name):
        problem, fix = "is an absolute path", TOP_LEVEL
    elif "\\" in name:
        problem, fix = "has a backslash in its name", REMAKE + ", with every file at the top level"
    elif any(part in ("", ".", "..") for part in parts):
        problem, fix = "has a '..', '.' or empty part in its path", TOP_LEVEL
    elif stat.S_ISLNK(mode):
        problem, fix = "is a symbolic link", "put the real file in the zip instead"
    elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        problem = "is not a regular file (it is a device, pipe or socket)"
        fix = "put only regular files in the zip"
    elif info.flag_bits & 0x1:
        problem, fix = "is encrypted", "create the zip again without a password"
    elif info.compress_type not in READABLE_METHODS:
        problem = f"uses a compression method (number {info.compress_type}) the grader cannot read"
        fix = "create the zip again with a standard zip tool, using the usual Deflate method"
    if not problem:
        return None
    return EntryProblem(
        (name,), problem, fix,
        detail=f"entry {name!r}: flags={info.flag_bits:#x} method={info.compress_type} "
        f"external_attr={info.external_attr:#x} create_system={info.create_system}",
    )


def size_problem(info: zipfile.ZipInfo, *, entry_bytes: int, max_ratio: int) -> EntryProblem | None:
    """An entry declaring more than ``entry_bytes``, or compressed more than ``max_ratio``:1."""
    name, size, packed = info.orig_filename, info.file_size, info.compress_size
    if size > entry_bytes:
        shown, limit = sizes_text(size, entry_bytes)
        return EntryProblem(
            (name,), f"is {shown} uncompressed, over the limit of {limit} per file",
            "make it smaller and upload again",
            detail=f"{name!r} declares {size} bytes > entry_bytes {entry_bytes}",
        )
    if size >= RATIO_MIN_BYTES and size > max_ratio * packed:
        ratio = f"{size // packed}:1" if packed else "without limit"
        return EntryProblem(
            (name,), f"is compressed {ratio}, more than the {max_ratio}:1 allowed, as in a zip bomb",
            "zip the real files and upload again",
            detail=f"{name!r} declares {size} bytes from {packed} compressed",
        )
    return None


def _overlap(archive: Path, infos: list[zipfile.ZipInfo], start_dir: int) -> EntryProblem | None:
    """Entries sharing bytes: each header + data must end before the next one starts."""
    by_offset: dict[int, zipfile.ZipInfo] = {}
    for info in infos:
        other = by_offset.setdefault(info.header_offset, info)
        if other is not info:
            return _shared(other, info, f"both at header offset {info.header_offset}")
    ordered = sorted(infos, key=lambda i: i.header_offset)
    with archive.open("rb") as fh:
        for index, info in enumerate(ordered):
            if info.header_offset < 0:
                return damaged(info, f"negative header offset {info.header_offset}")
            fh.seek(info.header_offset)
            head = fh.read(LOCAL_HEADER.size)
            if len(head) < LOCAL_HEADER.size:
                return damaged(info, "local header truncated")
            signature, name_len, extra_len = LOCAL_HEADER.unpack(head)
            if signature != b"PK\x03\x04":
                return damaged(info, f"bad local header signature {signature!r}")
            end = info.header_offset + LOCAL_HEADER.size + name_len + extra_len + info.compress_size
            if index + 1 < len(ordered):
                following = ordered[index + 1]
                if end > following.header_offset:
                    return _shared(info, following,
                                   f"data ends at {end}, next header at {following.header_offset}")
            elif end > start_dir:
                return damaged(info, f"data ends at {end}, central directory at {start_dir}")
    return None


def damaged(info: zipfile.ZipInfo, detail: str) -> EntryProblem:
    """An entry whose bytes are not where, or what, the zip says."""
    return EntryProblem((info.filename,), "does not read back correctly, as in a damaged zip",
                        REMAKE, detail=f"{info.filename!r}: {detail}")


def _shared(first: zipfile.ZipInfo, second: zipfile.ZipInfo, detail: str) -> EntryProblem:
    return EntryProblem(
        (first.filename, second.filename),
        "share the same bytes, as in a damaged or crafted zip", REMAKE,
        detail=f"overlapping entries {first.filename!r}, {second.filename!r}: {detail}",
    )


# --------------------------------------------------------------------------- wording


def show_name(name: str) -> str:
    """An entry name fit for a message: cut to SHOW_CHARS, quoted and escaped."""
    if len(name) > SHOW_CHARS:
        name = name[: SHOW_CHARS - 1] + "…"
    return repr(name)


def sizes_text(n: int, limit: int) -> tuple[str, str]:
    """Both sizes for a message, in exact bytes when rounding would make them look equal."""
    shown, limit_shown = size_text(n), size_text(limit)
    return (shown, limit_shown) if shown != limit_shown else (f"{n:,} bytes", f"{limit:,} bytes")


def size_text(n: int) -> str:
    for unit, factor in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return f"{n} bytes"
