"""The line every benchmark prints with its figures: the machine (cores, memory, load), the
Python and numpy in use, and the git revision measured (marked when the tree has changes)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" (with uncommitted changes)" if dirty else "")


def machine() -> str:
    """Cores (and how many this process may use), memory, load, versions and the revision."""
    import numpy as np

    from grader.sandbox.base import available_cores

    with open("/proc/meminfo") as fh:
        total = next(int(line.split()[1]) for line in fh if line.startswith("MemTotal")) / 2**20
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"machine: {os.cpu_count()} cores ({available_cores()} usable), {total:.1f} GiB, "
            f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}; "
            f"load average {load}; git {revision()}")
