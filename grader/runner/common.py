"""Small helpers of the in-sandbox runner: progress events, error text, safe array saving."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

SUBMISSION_ROOT = "/submission"


class Progress:
    """Appends one JSON line per event to ``progress.jsonl``; the host watches it."""

    def __init__(self, out: Path) -> None:
        self._path = out / "progress.jsonl"

    def event(self, event: str, part: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "part": part, "t": time.time(), **fields})
        # Open per event so a student closing or replacing file descriptors cannot silence us.
        with open(self._path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


def student_traceback(exc: BaseException, submission_root: str) -> str:
    """The traceback limited to frames in the student's files, newest last."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(submission_root)
    ]
    lines = [
        f'  File "{os.path.basename(f.filename)}", line {f.lineno}, in {f.name}\n    {f.line or ""}'
        for f in frames[-8:]
    ]
    head = "Traceback (your code only):\n" if lines else ""
    return head + "\n".join(lines) + ("\n" if lines else "") + describe(exc)


def describe(exc: BaseException) -> str:
    """``TypeName: message``, trimmed to one readable line."""
    text = str(exc).strip().replace("\n", " ")
    if len(text) > 400:
        text = text[:400] + " …"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def where(exc: BaseException, submission_root: str) -> str:
    """`` (layers.py, line 42, in forward)`` for the student's innermost frame, or ''."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(submission_root)
    ]
    if not frames:
        return ""
    f = frames[-1]
    return f" ({os.path.basename(f.filename)}, line {f.lineno}, in {f.name})"


def to_array(value: Any, what: str) -> Any:
    """Turn a student's return value into a plain numeric ndarray, or raise TypeError."""
    import numpy as np

    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray | float | int | list | tuple | np.generic):
        raise TypeError(f"{what} returned {type(value).__name__}, not a NumPy array")
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what} returned something that is not a rectangular array") from exc
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what} returned an array of dtype {array.dtype}, not numbers")
    return np.array(array, copy=True)


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # the student may have closed or replaced them
            stream.flush()
