"""The sandbox's runtime cache (grader/sandbox/runtime.py): kept while nothing changes, scanned
again when a package is installed or a shared library is replaced in place."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.sandbox import runtime
from grader.sandbox.runtime import runtime_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the cache file is written by root only")


@pytest.fixture
def venv(tmp_path: Path) -> Iterator[Path]:
    """A small venv whose site-packages holds one package with one shared object."""
    folder = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    ask = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    site = Path(subprocess.run([str(python), "-I", "-c", ask],
                               check=True, capture_output=True, text=True).stdout.strip())
    lib = site / "pkg" / "lib"
    lib.mkdir(parents=True)
    shutil.copy(_extension("_json"), lib / "native.so")
    yield python
    _cache(python).unlink(missing_ok=True)


def _extension(name: str) -> Path:
    """A real shared object of the standard library (``_json``, ``_csv``)."""
    return Path(importlib.import_module(name).__file__ or "")


def _cache(python: Path) -> Path:
    return runtime.CACHE_DIR / (hashlib.sha256(str(python).encode()).hexdigest()[:16] + ".json")


def _scan(python: Path) -> int:
    """Ask for the runtime as a new process would; the cache file's inode (new when rewritten)."""
    runtime_for.cache_clear()
    runtime_for(str(python))
    return _cache(python).stat().st_ino


def test_the_cache_is_kept_until_a_package_or_a_library_changes(venv: Path) -> None:
    site = next((venv.parent.parent / "lib").glob("python*/site-packages"))
    first = _scan(venv)
    assert _scan(venv) == first  # nothing changed: the cached answer, not a new scan

    time.sleep(0.05)  # a new modification time
    replacement = site / "pkg" / "lib" / "native.so.new"
    shutil.copy(_extension("_csv"), replacement)
    replacement.replace(site / "pkg" / "lib" / "native.so")  # replaced in place, as an upgrade does
    second = _scan(venv)
    assert second != first

    time.sleep(0.05)
    (site / "newpkg").mkdir()  # a package installed
    shutil.copy(_extension("_json"), site / "newpkg" / "fast.so")
    third = _scan(venv)
    assert third != second
    assert _scan(venv) == third
