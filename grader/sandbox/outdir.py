"""The job's writable ``/out``: a size-limited tmpfs on the host, copied off safely afterwards.

As root we mount a private tmpfs (``size=output_bytes``, bounded inode count, nosuid,
nodev, noexec) in the run folder and bind it to ``/out``; a flood ends in ENOSPC inside
the sandbox and can never fill the host disk. After the job has been killed we copy only
regular, singly-linked files (never following a symlink, total bounded) into the
caller's ``output_dir`` and unmount. Without mount rights the caller's folder is bound
directly and ``sweep_in_place`` applies the same rules after the run. ``OutputFolder`` is
that life cycle for one run, shared by the bwrap and docker backends.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from grader.sandbox.base import temp_prefix
from grader.text import clean_text

logger = logging.getLogger(__name__)

MAX_OUTPUT_ENTRIES = 4096  # files + folders /out may hold (the tmpfs inode limit)
PAGE = 4096
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2
_COPY_CHUNK = 1 << 20

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


@dataclass
class OutputReport:
    """What was kept from ``/out`` and what was dropped (and why)."""

    kept_bytes: int = 0
    kept_files: int = 0
    dropped: list[str] = field(default_factory=list)
    exceeded: bool = False

    def note(self) -> str:
        """One line for the log, empty when nothing was dropped."""
        if not self.dropped:
            return ""
        # The names are the job's: undecodable bytes arrive as lone surrogates (os.fsdecode).
        shown = ", ".join(clean_text(d, 200) for d in self.dropped[:8]) + (
            " …" if len(self.dropped) > 8 else "")
        return f"[grader: not kept from /out: {shown}]"

    def annotate(self, stderr: str) -> str:
        """``stderr`` with the note appended on its own line (and logged) if anything was dropped."""
        if not self.dropped:
            return stderr
        logger.warning("sandbox output: %s", self.note())
        return stderr + ("\n" if stderr and not stderr.endswith("\n") else "") + self.note() + "\n"


def mount_tmpfs(target: Path, *, size_bytes: int, max_entries: int = MAX_OUTPUT_ENTRIES,
                owner: tuple[int, int] | None = None) -> None:
    """Mount a fresh tmpfs on ``target``, its root owned by ``owner`` (uid, gid) and mode 0700,
    or mode 0777 without one; raises OSError (e.g. EPERM when not root)."""
    size = max(PAGE, size_bytes)  # size=0 would mean "unbounded"
    who = f"uid={owner[0]},gid={owner[1]},mode=0700" if owner else "mode=0777"
    options = f"size={size},nr_inodes={max(2, max_entries)},{who}".encode()
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    if _libc.mount(b"tmpfs", os.fsencode(target), b"tmpfs", flags, options) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"mount tmpfs on {target}: {os.strerror(code)}")


def unmount(target: Path) -> None:
    """Unmount ``target``; lazily detach if it is still busy."""
    path = os.fsencode(target)
    if (_libc.umount2(path, 0) != 0 and ctypes.get_errno() != errno.EINVAL
            and _libc.umount2(path, _MNT_DETACH) != 0):
        code = ctypes.get_errno()
        raise OSError(code, f"unmount {target}: {os.strerror(code)}")


def is_full(target: Path) -> bool:
    """True when the tmpfs on ``target`` has no page or no inode left."""
    st = os.statvfs(target)
    return st.f_bavail == 0 or st.f_favail == 0


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "fifo"), (stat.S_ISSOCK, "socket"),
             (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))
    for test, name in kinds:
        if test(mode):
            return name
    return "special file"


def _copy_file(src: str, dst: str, size: int) -> None:
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd_in).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o644)
        try:
            left = size
            while left > 0:
                chunk = os.read(fd_in, min(_COPY_CHUNK, left))
                if not chunk:
                    break
                os.write(fd_out, chunk)
                left -= len(chunk)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Yield (relative path, lstat) for every entry, folders before their contents, sorted."""
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            names = sorted(os.listdir(os.path.join(root, rel) if rel else root))
        except OSError:
            continue
        subdirs = []
        for name in names:
            child = os.path.join(rel, name) if rel else name
            try:
                st = os.lstat(os.path.join(root, child))
            except OSError:
                continue
            yield child, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(child)
        stack.extend(reversed(subdirs))


def copy_out(src_root: Path, dst_root: Path, *, limit_bytes: int,
             max_entries: int = MAX_OUTPUT_ENTRIES) -> OutputReport:
    """Copy regular singly-linked files and folders from ``src_root``; never follow links."""
    report = OutputReport()
    src, dst = os.fspath(src_root), os.fspath(dst_root)
    os.makedirs(dst, exist_ok=True)
    skipped_dirs: list[str] = []
    for count, (rel, st) in enumerate(_walk(src)):
        if any(rel.startswith(d + os.sep) for d in skipped_dirs):
            continue
        if count >= max_entries:
            report.dropped.append(f"{rel} (too many entries)")
            report.exceeded = True
            break
        target = os.path.join(dst, rel)
        if stat.S_ISDIR(st.st_mode):
            try:
                os.mkdir(target, 0o755)
            except FileExistsError:
                if not stat.S_ISDIR(os.lstat(target).st_mode):
                    report.dropped.append(f"{rel}/ (name taken in output_dir)")
                    skipped_dirs.append(rel)
            continue
        if not stat.S_ISREG(st.st_mode):
            report.dropped.append(f"{rel} ({_kind(st.st_mode)})")
            continue
        if st.st_nlink > 1:
            report.dropped.append(f"{rel} (hard link)")
            continue
        if report.kept_bytes + st.st_size > limit_bytes:
            report.dropped.append(f"{rel} (over the output limit)")
            report.exceeded = True
            continue
        try:
            _copy_file(os.path.join(src, rel), target, st.st_size)
        except OSError as exc:
            report.dropped.append(f"{rel} ({exc.strerror or exc})")
            continue
        report.kept_bytes += st.st_size
        report.kept_files += 1
    return report


def sweep_in_place(root: Path, *, limit_bytes: int,
                   max_entries: int = MAX_OUTPUT_ENTRIES) -> OutputReport:
    """Apply the ``copy_out`` rules to a folder the job wrote directly: delete what breaks them."""
    report = OutputReport()
    base = os.fspath(root)
    for count, (rel, st) in enumerate(list(_walk(base))):
        path = os.path.join(base, rel)
        if stat.S_ISDIR(st.st_mode):
            if count >= max_entries:
                report.exceeded = True
            continue
        reason = ""
        if count >= max_entries:
            reason, report.exceeded = "too many entries", True
        elif not stat.S_ISREG(st.st_mode):
            reason = _kind(st.st_mode)
        elif st.st_nlink > 1:
            reason = "hard link"
        elif report.kept_bytes + st.st_size > limit_bytes:
            reason, report.exceeded = "over the output limit", True
        if reason:
            report.dropped.append(f"{rel} ({reason})")
            with contextlib.suppress(OSError):
                os.unlink(path)  # unlink never follows a symlink
        else:
            report.kept_bytes += st.st_size
            report.kept_files += 1
    return report


class OutputFolder:
    """One run's ``/out``: a host tmpfs on a fresh run folder (made in ``work_dir``) if we may
    mount, else ``output_dir`` itself. ``release`` unmounts and removes the run folder."""

    def __init__(self, output_dir: Path, *, work_dir: Path | None, limit_bytes: int,
                 can_mount: bool, owner: tuple[int, int] | None = None) -> None:
        self.output_dir = output_dir
        self.mount_point = Path(tempfile.mkdtemp(prefix=temp_prefix("grader-run"), dir=work_dir))
        self.limit_bytes = limit_bytes
        self.can_mount = can_mount
        self.owner = owner  # the job's host uid:gid, who owns /out's root
        self.mounted: Path | None = None
        self.enforced = ""

    def prepare(self) -> Path:
        """Make the folder the job sees as /out; returns its host path (readable while it runs)."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if self.can_mount:
            try:
                mount_tmpfs(self.mount_point, size_bytes=self.limit_bytes, owner=self.owner)
            except OSError as exc:
                logger.warning("no tmpfs for /out (%s); bounding output by RLIMIT_FSIZE only", exc)
            else:
                self.mounted = self.mount_point
                self.enforced = "tmpfs on the host (size + inode limit)"
                return self.mount_point
        self.enforced = "RLIMIT_FSIZE + post-run check (host disk not protected)"
        if self.owner is not None and os.geteuid() == 0:
            os.chown(self.output_dir, *self.owner)
        return self.output_dir

    def collect(self) -> OutputReport:
        """After the job is dead: keep what follows the rules in ``output_dir``."""
        if self.mounted is None:
            return sweep_in_place(self.output_dir, limit_bytes=self.limit_bytes)
        full = is_full(self.mounted)
        report = copy_out(self.mounted, self.output_dir, limit_bytes=self.limit_bytes)
        report.exceeded = report.exceeded or full
        return report

    def release(self) -> None:
        """Unmount the tmpfs and remove the run folder; a folder that stays mounted is kept (logged)."""
        if self.mounted is not None:
            try:
                unmount(self.mounted)
            except OSError:
                logger.exception("cannot unmount %s; leaving the run folder", self.mounted)
                return
            self.mounted = None
        shutil.rmtree(self.mount_point, ignore_errors=True)


_MS_RDONLY, _MS_REMOUNT, _MS_BIND, _MS_REC = 1, 32, 4096, 16384


def bind_mount(source: Path, target: Path, *, writable: bool = False) -> None:
    """Bind ``source`` (with what is mounted below it) on ``target``, nosuid and nodev; read-only,
    or writable and noexec. Raises OSError (e.g. EPERM when not root)."""
    src, dst = os.fsencode(source), os.fsencode(target)
    if _libc.mount(src, dst, None, _MS_BIND | _MS_REC, None) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind {source} on {target}: {os.strerror(code)}")
    flags = _MS_BIND | _MS_REMOUNT | _MS_NOSUID | _MS_NODEV | (_MS_NOEXEC if writable else _MS_RDONLY)
    if _libc.mount(None, dst, None, flags, None) != 0:
        code = ctypes.get_errno()
        with contextlib.suppress(OSError):
            unmount(target)
        raise OSError(code, f"make the bind on {target} read-only: {os.strerror(code)}")
