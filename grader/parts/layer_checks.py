"""Layer tests in general: cases of probe inputs for the sandbox, checks of what came back.

An assignment's own cases (its reference implementation, public examples and seeded hidden
cases) live in its folder (``tests = "layer_tests.py"`` of a ``kind = "layers"`` part); this
module holds what every such file builds on and the judging, on the host.

Each single-layer check names the method it tests; a combined check (say, training with two
layers) names the layers it needs. When a combined check fails while one of those layers
fails its own tests, its message sends the student to that method ("fix Layer.backward
first") instead of a hint about how the layers work together, which only applies once
every test of those layers passes.

Every test result names its group for the pages: the class of the method a single-layer
check tests ("Linear" for "Linear.backward"), or the layers of a combined check joined by
" + " (combined checks form their own group). A check the sandbox did not run because an
earlier check of the same case failed (its error starts with "not run", as a probes file
writes it: "not run because Linear.forward failed") names that failed check in
``caused_by``, so the page can fold it under the failure that caused it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from grader.result import TestResult
from grader.text import clean_text
from grader.untrusted import ForgedOutput, read_json, read_npz

ATOL = 1.5e-6  # "compared to 6 decimals", as numpy's assert_almost_equal(decimal=6)
RTOL = 1e-6


# --------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Check:
    """One named test: compare output ``key`` of a case with ``expected``."""

    name: str
    key: str
    expected: np.ndarray
    hint: str = ""  # what usually causes a mismatch
    method: str = ""  # a single-layer check: the method it tests, e.g. "Dense.backward"
    requires: tuple[str, ...] = ()  # a combined check: the layers it uses, e.g. ("Dense", "Loss")


@dataclass(frozen=True)
class Case:
    id: str
    op: str
    args: dict[str, Any]
    inputs: dict[str, np.ndarray]
    checks: tuple[Check, ...] = field(default_factory=tuple)


def write_probes(cases: list[Case], path: Path) -> list[dict[str, Any]]:
    """Save the cases' inputs (never the expected values) for the sandbox; return their plan."""
    arrays: dict[str, Any] = {f"{c.id}.{k}": np.asarray(v, dtype=np.float64)
                              for c in cases for k, v in c.inputs.items()}
    np.savez(path, **arrays)
    return [{"id": c.id, "op": c.op, "args": c.args} for c in cases]


# --------------------------------------------------------------------------- judging


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def compare(check: Check, got: np.ndarray | None, error: str | None) -> TestResult:
    """One test result with one sentence a student can act on."""
    if error is not None:
        return TestResult(check.name, False, f"{error}.")
    if got is None:
        return TestResult(check.name, False, "produced no output.")
    expected = np.asarray(check.expected)
    if expected.dtype == bool:
        ok = bool(got.shape == () and bool(got))
        return TestResult(check.name, ok, "" if ok else f"it does not: {check.hint}.")
    if got.shape != expected.shape:
        return TestResult(
            check.name, False,
            f"expected shape {expected.shape}, got {got.shape}; {check.hint}.",
        )
    got_f = got.astype(np.float64)
    if not np.all(np.isfinite(got_f)):
        return TestResult(check.name, False, f"the result contains NaN or infinity; {check.hint}.")
    diff = np.abs(got_f - expected)
    bad = diff > ATOL + RTOL * np.abs(expected)
    if not bad.any():
        return TestResult(check.name, True, "")
    idx = np.unravel_index(int(np.argmax(np.where(bad, diff, -1))), diff.shape)
    at = f" at index {tuple(int(i) for i in idx)}" if diff.ndim else ""
    return TestResult(
        check.name, False,
        f"largest difference {_fmt(float(diff[idx]))}{at} (expected {_fmt(float(expected[idx]))}, "
        f"got {_fmt(float(got_f[idx]))}); {check.hint}.",
    )


MAX_CASE_BYTES = 16 * 2**20  # one case's .npz: a few small arrays
MAX_CASE_ELEMENTS = 10**6  # values judged per case, all its arrays together
MAX_CASE_JSON_BYTES = 2**20


def _load_case_output(out_dir: Path, cid: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """What the sandbox wrote for one case: arrays by output key, and error texts by key.

    The one boundary for the case's two files: a file that is damaged, forged or over its
    limit fails this case's checks with "damaged or forged output", nothing more.
    """
    try:
        arrays = read_npz(out_dir / f"{cid}.npz", max_bytes=MAX_CASE_BYTES,
                          max_elements=MAX_CASE_ELEMENTS) or {}
        meta = read_json(out_dir / f"{cid}.json", max_bytes=MAX_CASE_JSON_BYTES)
    except ForgedOutput as exc:
        return {}, {"case": f"damaged or forged output ({exc})"}
    raw = meta.get("errors", {}) if isinstance(meta, dict) else {}
    errors = {clean_text(k, 100): clean_text(v, 600) for k, v in raw.items()} \
        if isinstance(raw, dict) else {}
    return arrays, errors


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def blame(check: Check, failed: dict[str, str]) -> str:
    """For a combined check: which of its layers' methods fail their own tests, as a hint
    ("" when none does). ``failed``: method -> name of its first failing test."""
    methods = [m for m in failed if m.split(".")[0] in check.requires]
    if not methods:
        return ""
    first = failed[methods[0]]
    if len(methods) == 1:
        return f"fix {methods[0]} first: its own test '{first}' fails, and this check uses it"
    return (f"fix {_and(methods)} first: their own tests fail (first '{first}'), and this check "
            "uses them")


NOT_RUN = "not run"  # how a probes file starts the error of a check it skipped


def group_of(check: Check) -> str:
    """The page's group of a check: its method's class, or its layers for a combined check."""
    if check.method:
        return check.method.split(".")[0]
    return " + ".join(check.requires)


def judge_cases(cases: list[Case], out_dir: Path) -> Iterator[TestResult]:
    """Compare every check of every case with what the sandbox wrote; a failing combined check
    names the failing method of a layer it uses (see the module's docstring)."""
    judged: list[tuple[Check, np.ndarray | None, str | None, TestResult]] = []
    failed: dict[str, str] = {}  # method -> its first failing test, in the cases' order
    for case in cases:
        arrays, errors = _load_case_output(out_dir, case.id)
        first_failure = ""  # of this case: what a check "not run" was stopped by
        for check in case.checks:
            error = errors.get(check.key) or errors.get("case")
            got = arrays.get(check.key)
            if error is None and got is None:
                error = "did not run (the layer tests stopped before this case)"
            result = replace(compare(check, got, error), group=group_of(check))
            if not result.passed and error is not None and error.startswith(NOT_RUN) and first_failure:
                result = replace(result, caused_by=first_failure)
            judged.append((check, got, error, result))
            if not result.passed:
                first_failure = first_failure or check.name
                if check.method:
                    failed.setdefault(check.method, check.name)
    for check, got, error, result in judged:
        hint = blame(check, failed) if check.requires and not result.passed else ""
        if not hint:
            yield result
        elif error is not None:
            yield replace(result, message=f"{error.rstrip('.')}; {hint}.")
        else:
            yield replace(compare(replace(check, hint=hint), got, None), group=result.group,
                          caused_by=result.caused_by)
