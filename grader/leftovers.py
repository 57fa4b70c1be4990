"""What a killed grader process leaves in its work folder, and removing it.

A grader killed in the middle of a job (SIGKILL, a machine reset with a persistent /tmp, the
OOM killer) leaves its run folders behind: the student's unpacked code, a downloaded archive,
and the size-limited tmpfs mounted on the sandbox's /out, which holds memory until unmounted.
Every such path is named ``<kind>-<owner>-…`` (``sandbox.base.temp_prefix``), where the owner is the pid
namespace and pid of the process that made it; ``sweep`` removes those of owners in our pid
namespace that no longer exist (never another live grader's, even one sharing the folder, and
never those of processes in another namespace, e.g. a worker in another container).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from grader.sandbox.base import TEMP_KINDS, pid_namespace, process_alive
from grader.sandbox.cgroups import mount_points
from grader.sandbox.outdir import unmount

logger = logging.getLogger(__name__)

_swept: set[str] = set()


def _owner(name: str) -> tuple[str, int] | None:
    for kind in TEMP_KINDS:
        if name.startswith(kind + "-"):
            owner = name[len(kind) + 1:].split("-", 1)[0]
            namespace, _, pid = owner.partition(".")
            if namespace.isdigit() and pid.isdigit():
                return namespace, int(pid)
    return None


def sweep(work_dir: Path | None = None) -> list[Path]:
    """Remove the leftovers of dead grader processes in ``work_dir`` (default: the temp folder),
    unmounting what is mounted in them first; returns what was removed."""
    folder = Path(work_dir or tempfile.gettempdir())
    namespace = pid_namespace()
    dead = []
    with contextlib.suppress(OSError):
        for entry in folder.iterdir():
            owner = _owner(entry.name)
            if owner is not None and owner[0] == namespace and not process_alive(owner[1]):
                dead.append(entry)
    if not dead:
        return []
    mounts = mount_points()
    removed = []
    for entry in dead:
        inside = sorted((m for m in mounts if m == entry or entry in m.parents),
                        key=lambda m: len(m.parts), reverse=True)
        try:
            for mountpoint in inside:
                unmount(mountpoint)
        except OSError as exc:
            logger.warning("cannot unmount %s left by a dead grader process: %s", entry, exc)
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        if not entry.exists():
            removed.append(entry)
    if removed:
        logger.warning("removed %d temporary path(s) left in %s by grader processes that died: %s",
                       len(removed), folder, ", ".join(p.name for p in removed))
    return removed


def sweep_once(work_dir: Path | None = None) -> None:
    """``sweep`` the first time this process uses ``work_dir``."""
    key = os.fspath(work_dir or tempfile.gettempdir())
    if key not in _swept:
        _swept.add(key)
        sweep(work_dir)
