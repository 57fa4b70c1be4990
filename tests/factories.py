"""Plain keyword factories for tests: real files built under a test's tmp_path."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path


def make_zip(
    path: Path,
    files: Mapping[str, bytes] | Iterable[tuple[str | zipfile.ZipInfo, bytes]],
    *,
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    """Write a zip at ``path`` holding ``files`` (name or ZipInfo -> bytes, in order); return it."""
    items = files.items() if isinstance(files, Mapping) else files
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Some tests want duplicate names on purpose; zipfile warns about them.
        warnings.filterwarnings("ignore", "Duplicate name", UserWarning)
        with zipfile.ZipFile(path, "w", compression) as zf:
            for name, data in items:
                zf.writestr(name, data)
    return path
