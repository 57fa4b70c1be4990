"""Copy a built hidden test set to a grading machine, checking every file against its manifest.

A worker machine keeps its own copy of the hidden data (the sandbox mounts its inputs; the
judge reads its labels). ``sync_hidden_data`` copies it from a folder every machine can
read (an NFS or object-store mount, or a folder filled by ``rsync``): only what differs is
copied, the copy is verified before it replaces the old one, and a damaged source is
refused before anything is touched.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from grader.datasets.build import check_replaceable, swap_in
from grader.datasets.errors import DataBuildError
from grader.datasets.manifest import MANIFEST_NAME, Manifest, load_manifest, sha256_file
from grader.errors import GraderFault


@dataclass(frozen=True)
class SyncReport:
    """What a sync did: files copied and kept, bytes copied, and the set's fingerprint."""

    dest: Path
    copied: int
    kept: int
    bytes_copied: int
    fingerprint: str

    @property
    def up_to_date(self) -> bool:
        return self.copied == 0


def fingerprint(root: Path) -> str:
    """The SHA-256 of a set's manifest: equal on two machines means the same hidden data."""
    return hashlib.sha256((Path(root) / MANIFEST_NAME).read_bytes()).hexdigest()


def verified_copy(root: Path) -> Manifest:
    """The manifest of ``root`` after checking every file; GraderFault with the reason if not."""
    return load_manifest(Path(root), verify=True)


def sync_hidden_data(source: Path, dest: Path) -> SyncReport:
    """Make ``dest`` a verified copy of the built set at ``source``.

    Raises ``DataBuildError`` (one sentence) when the source is missing or damaged, or when
    ``dest`` is something other than an earlier copy; ``dest`` is then left as it was.
    """
    source, dest = Path(source).resolve(), Path(dest)
    if source == dest.resolve():
        raise DataBuildError(f"the source and the destination are the same folder ({dest})")
    try:
        manifest = verified_copy(source)
    except GraderFault as exc:
        raise DataBuildError(f"the source {source} is not a usable hidden test set: {exc.message}") from None
    if _same_set(source, dest):
        return SyncReport(dest, 0, len(manifest.files), 0, fingerprint(dest))
    check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.sync-", dir=dest.parent))
    try:
        tmp.chmod(0o755)
        copied = kept = size = 0
        for rel, digest in sorted(manifest.files.items()):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            have = dest / rel
            if have.is_file() and not have.is_symlink() and sha256_file(have) == digest:
                shutil.copyfile(have, target)
                kept += 1
            else:
                shutil.copyfile(source / rel, target)
                copied += 1
                size += target.stat().st_size
        shutil.copyfile(source / MANIFEST_NAME, tmp / MANIFEST_NAME)
        try:
            verified_copy(tmp)  # what was read may have changed under us: check the copy itself
        except GraderFault as exc:
            raise DataBuildError(f"the copy does not match its manifest ({exc.message}); try again") from None
        _fsync_tree(tmp)
        swap_in(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SyncReport(dest, copied + 1, kept, size, fingerprint(dest))


def _same_set(source: Path, dest: Path) -> bool:
    """True when ``dest`` already holds the source's manifest and passes verification."""
    try:
        if (dest / MANIFEST_NAME).read_bytes() != (source / MANIFEST_NAME).read_bytes():
            return False
        verified_copy(dest)
    except (OSError, GraderFault):
        return False
    return True


def _fsync_tree(root: Path) -> None:
    for here, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(here) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
