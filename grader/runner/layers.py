"""Apply the student's layers to the probe inputs; the host compares the outputs.

How each case drives the layers (its ``op``) comes from the assignment: the part's
``probes`` file, copied into the job folder, defines ``OPS``: op name -> function
``(module, recorder, arrays, args)``; this module runs them, one failing case never
stopping the others.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from runner.common import describe, to_array, where


class Recorder:
    """Collects the outputs of one case, or the error that stopped each of them."""

    def __init__(self, submission_root: str) -> None:
        self.arrays: dict[str, Any] = {}  # Any: numpy's savez stub would match ** to allow_pickle
        self.errors: dict[str, str] = {}
        self._root = submission_root

    def take(self, key: str, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; keep its value under ``key`` or the error it raised."""
        try:
            value = fn()
            self.arrays[key] = to_array(value, what)
            return value
        except Exception as exc:
            self.errors[key] = f"{what} raised {describe(exc)}{where(exc, self._root)}"
            return None

    def fail_rest(self, keys: list[str], reason: str) -> None:
        for key in keys:
            self.errors.setdefault(key, reason)


def run_cases(
    module: Any, ops: dict[str, Callable[..., None]], cases: list[dict[str, Any]], probes: Path,
    out: Path, root: str,
) -> None:
    """Run every case; one failing case never stops the others."""
    out.mkdir(parents=True, exist_ok=True)
    with np.load(probes, allow_pickle=False) as data:
        inputs = {k: data[k] for k in data.files}
    for case in cases:
        cid = case["id"]
        arrays = {k.split(".", 1)[1]: v for k, v in inputs.items() if k.split(".", 1)[0] == cid}
        rec = Recorder(root)
        try:
            ops[case["op"]](module, rec, arrays, case.get("args", {}))
        except Exception as exc:  # a student's object misbehaving in a way the op did not expect
            rec.errors["case"] = f"{describe(exc)}{where(exc, root)}"
        np.savez(out / f"{cid}.npz", **rec.arrays)
        (out / f"{cid}.json").write_text(json.dumps({"errors": rec.errors}), encoding="utf-8")
