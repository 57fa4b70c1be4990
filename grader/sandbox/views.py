"""Host paths the sandbox user cannot reach, made reachable read-only (bwrap run as root).

A grader running as root starts bubblewrap as the unprivileged ``grader-sandbox`` user, and
bwrap makes its binds with that user's rights: it cannot bind a path below a folder the user
may not enter (``/root/.pyenv/...`` under the 0700 /root, the 0700 per-run folders of the work
folder). For such a path the grader itself (root) bind-mounts it read-only (nosuid, nodev)
under ``VIEWS_ROOT``, a root-owned 0755 folder, and bwrap binds that view at the original path
inside. The user gains nothing on the host beyond reading what the sandbox shows anyway.

Two kinds: ``persistent_view`` for the runtime (interpreter, standard library, venv), made once
per path and kept (a later run finds it in /proc/self/mountinfo); ``RunViews`` for one run's
mounts and /out, unmounted when the run ends (a killed grader's are swept like its other
leftovers: ``grader-view-<owner>-…`` folders, grader/leftovers.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from grader.errors import GraderFault
from grader.sandbox.base import temp_prefix
from grader.sandbox.cgroups import mount_points
from grader.sandbox.outdir import bind_mount, unmount

logger = logging.getLogger(__name__)

VIEWS_ROOT = Path("/var/lib/grader-sandbox/views")
FIX = "run scripts/sandbox-user.sh"


def _views_root() -> Path:
    """VIEWS_ROOT, made root-owned 0755 if missing; GraderFault if it is not safe to use."""
    with contextlib.suppress(FileExistsError):
        VIEWS_ROOT.mkdir(mode=0o755, parents=True)
    st = os.lstat(VIEWS_ROOT)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise GraderFault(f"{VIEWS_ROOT} must be a root-owned folder writable only by root; {FIX}")
    return VIEWS_ROOT


def _place(source: str, target: Path) -> None:
    """Make the mount point ``target`` for ``source``: a folder, or an empty file."""
    if os.path.isdir(source):
        target.mkdir(mode=0o755, exist_ok=True)
    else:
        with contextlib.suppress(FileExistsError):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o444))


def persistent_view(source: str) -> Path:
    """A read-only view of ``source`` under VIEWS_ROOT, made once and kept (idempotent)."""
    real = os.path.realpath(source)
    root = _views_root()
    target = root / hashlib.sha256(os.fsencode(real)).hexdigest()[:16]
    if target in mount_points():
        return target
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another grader process may be making the same view
        if target in mount_points():
            return target
        try:
            _place(real, target)
            bind_mount(Path(real), target)
        except OSError as exc:
            raise GraderFault(f"cannot make {source} reachable for the sandbox user: {exc}") from exc
    logger.info("sandbox view of %s at %s", real, target)
    return target


class RunViews:
    """One run's views (its mounts, /out); ``release`` unmounts them and removes the folder."""

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.mounted: list[Path] = []

    def view(self, source: str, *, writable: bool = False) -> Path:
        """A view of ``source`` (read-only unless ``writable``) for this run."""
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix=temp_prefix("grader-view"),
                                                dir=_views_root()))
            self.folder.chmod(0o755)
        target = self.folder / str(len(self.mounted))
        try:
            _place(os.path.realpath(source), target)
            bind_mount(Path(source), target, writable=writable)
        except OSError as exc:
            raise GraderFault(f"cannot make {source} reachable for the sandbox user: {exc}") from exc
        self.mounted.append(target)
        return target

    def release(self) -> None:
        for target in reversed(self.mounted):
            try:
                unmount(target)
            except OSError:
                logger.exception("cannot unmount the sandbox view %s; leaving it", target)
                return
        self.mounted = []
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
