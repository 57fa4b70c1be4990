"""Outputs of the sandbox + hidden answers -> part results. Trusted; never imports student code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.config import SPLITS, Assignment, PartSpec
from grader.layer_tests import Case, judge_cases
from grader.plausibility import plausibility_flags
from grader.result import GradeResult, PartResult, Status, TestResult
from grader.untrusted import ForgedOutput, read_npy

MAX_PREDICTION_BYTES = 64 * 2**20
MAX_PREDICTION_FACTOR = 16  # values a predictions file may hold, per expected prediction


@dataclass(frozen=True)
class PartRun:
    """How the sandbox run of one part ended, as the host saw it."""

    name: str
    status: Status  # GRADED when it ran to the end (even if the student's code raised)
    failed: bool = False  # the student's code raised (status stays GRADED)
    message: str = ""  # for the student
    detail: str = ""  # for staff: traceback, stderr tail
    runtime_s: float = 0.0
    out_dir: Path | None = None


def public_mask(n: int, fraction: float, seed: int, key: str) -> np.ndarray:
    """A fixed subset of ``fraction`` of ``n`` items: the part the live leaderboard shows."""
    if fraction >= 1.0:
        return np.ones(n, dtype=bool)
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    mask = np.zeros(n, dtype=bool)
    mask[rng.permutation(n)[: round(n * fraction)]] = True
    return mask


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _not_run(spec: PartSpec, run: PartRun) -> PartResult | None:
    """A result for a part whose code did not get to the end, or None if it did."""
    if run.status is Status.GRADED and not run.failed:
        return None
    status = Status.CRASHED if run.failed else run.status
    return PartResult(
        name=spec.name, status=status, score=0.0, max_score=spec.points, passed=False,
        message=run.message, detail=run.detail, runtime_s=run.runtime_s,
    )


def judge_numpy(spec: PartSpec, run: PartRun, cases: list[Case]) -> PartResult:
    """Score the layer tests; tests that ran are judged even when the part was stopped."""
    tests = tuple(judge_cases(cases, run.out_dir)) if run.out_dir else ()
    passed_count = sum(t.passed for t in tests)
    total = sum(len(c.checks) for c in cases)
    score = round(spec.points * passed_count / total, 4) if spec.scoring == "per_test" else (
        spec.points if passed_count == total else 0.0
    )
    stopped = _not_run(spec, run)
    if stopped is not None and not tests:
        return stopped
    status = stopped.status if stopped else Status.GRADED
    all_passed = passed_count == total and stopped is None
    if stopped is not None:
        message = f"{run.message} {passed_count} of {total} layer tests passed before that."
    elif all_passed:
        message = f"All {total} layer tests passed."
    else:
        first = next(t for t in tests if not t.passed)
        message = (f"{passed_count} of {total} layer tests passed; "
                   f"first failure: {first.name}: {first.message}")
    return PartResult(
        name=spec.name, status=status, score=score, max_score=spec.points, passed=all_passed,
        message=message, tests=tests, detail=run.detail, runtime_s=run.runtime_s,
    )


def load_predictions(path: Path, count: int, num_classes: int) -> tuple[np.ndarray | None, str]:
    """Read one predictions file written in the sandbox; (array, '') or (None, why not).

    The one boundary for that file: whatever it holds, the answer is a reason, never an error.
    The header is checked before anything is allocated, and a file may hold a few times
    ``count`` values at most (enough to say what shape it has), so judging it is bounded.
    """
    try:
        values = read_npy(path, max_bytes=MAX_PREDICTION_BYTES,
                          max_elements=MAX_PREDICTION_FACTOR * max(count, 1))
    except ForgedOutput as exc:
        return None, f"damaged or forged output: {exc}"
    if values is None:
        return None, "no predictions were written"
    if values.dtype.kind not in "iu":
        return None, "predictions must be integer class indices"
    if values.shape != (count,):
        return None, f"expected {count} predictions, found shape {values.shape}"
    if count and (values.min() < 0 or values.max() >= num_classes):
        return None, f"class indices must lie in 0..{num_classes - 1}"
    return values.astype(np.int64), ""


def read_predictions(
    out_dir: Path | None, truth: Mapping[str, np.ndarray], num_classes: int
) -> dict[str, np.ndarray]:
    """The valid class indices per split, as the judge reads them (for the staff's similarity check)."""
    found: dict[str, np.ndarray] = {}
    if out_dir is None:
        return found
    for split, labels in truth.items():
        values, _why = load_predictions(out_dir / f"{split}.npy", len(labels), num_classes)
        if values is not None:
            found[split] = values
    return found


def judge_classifier(
    spec: PartSpec,
    run: PartRun,
    truth: Mapping[str, np.ndarray],
    public: Mapping[str, np.ndarray],
    num_classes: int,
    dataset_title: str,
) -> PartResult:
    """Accuracy per split, the weighted value where the spec weights splits, pass/fail, points."""
    metrics: dict[str, float] = {}
    public_metrics: dict[str, float] = {}
    private_metrics: dict[str, float] = {}
    problems: list[str] = []
    for split, labels in truth.items():
        if run.out_dir is None:
            problems.append(f"{split}: no predictions were written")
            continue
        got, why = load_predictions(run.out_dir / f"{split}.npy", len(labels), num_classes)
        if got is None:
            problems.append(f"{split}: {why}")
            continue
        correct = got == labels
        metrics_key = "accuracy" if not spec.weights else split
        metrics[metrics_key] = float(correct.mean()) if len(labels) else 0.0
        mask = public[split]
        public_metrics[metrics_key] = float(correct[mask].mean()) if mask.any() else 0.0
        if not mask.all():
            private_metrics[metrics_key] = float(correct[~mask].mean())
    stopped = _not_run(spec, run)
    complete = not problems and stopped is None
    if spec.weights and all(s in metrics for s in SPLITS):
        metrics["weighted"] = sum(spec.weights[s] * metrics[s] for s in SPLITS)
        public_metrics["weighted"] = sum(spec.weights[s] * public_metrics[s] for s in SPLITS)
        if all(s in private_metrics for s in SPLITS):
            private_metrics["weighted"] = sum(spec.weights[s] * private_metrics[s] for s in SPLITS)
    value = metrics.get(spec.main_metric)
    passed = complete and value is not None and spec.passes(value)
    if stopped is not None:
        return PartResult(
            name=spec.name, status=stopped.status, score=0.0, max_score=spec.points, passed=False,
            message=stopped.message, metrics=metrics, public_metrics=public_metrics,
            private_metrics=private_metrics, detail=run.detail, runtime_s=run.runtime_s,
        )
    if problems:
        message = (f"{spec.model_class}: the predictions could not be used ({'; '.join(problems)}).")
    elif spec.weights:
        terms = " + ".join(f"{spec.weights[s]:g}·{s} {_pct(metrics[s])}" for s in SPLITS)
        verdict = "passed" if passed else "not passed"
        message = (f"{spec.model_class}: weighted accuracy {_pct(metrics['weighted'])} = {terms}; "
                   f"{verdict} (pass above {_pct(spec.threshold)}).")
    else:
        verdict = "passed" if passed else "not passed"
        message = (f"{spec.model_class}: {_pct(metrics['accuracy'])} on the hidden {dataset_title}; "
                   f"{verdict} (pass above {_pct(spec.threshold)}).")
    tests = tuple(
        TestResult(f"{spec.model_class} accuracy on {s}", spec.passes(metrics.get(k, 0.0)),
                   _pct(metrics[k]) if k in metrics else "not measured")
        for s, k in ((s, s if spec.weights else "accuracy") for s in truth)
    )
    return PartResult(
        name=spec.name, status=Status.GRADED, score=spec.points if passed else 0.0,
        max_score=spec.points, passed=passed, message=message, metrics=metrics,
        public_metrics=public_metrics, private_metrics=private_metrics, tests=tests,
        detail=run.detail, runtime_s=run.runtime_s,
    )


def combine(
    assignment: Assignment,
    parts: Sequence[PartResult],
    *,
    submission_sha256: str,
    environment: Mapping[str, object],
    warnings: Sequence[str] = (),
) -> GradeResult:
    """The whole result: the status of the first part that did not finish, or ``graded``."""
    score = round(sum(p.score for p in parts), 4)
    max_score = assignment.max_score
    unfinished = [p for p in parts if p.status is not Status.GRADED]
    passed = all(p.passed for p in parts)
    summary = ", ".join(f"{p.name} {'passed' if p.passed else 'not passed'}" for p in parts)
    if unfinished:
        first = unfinished[0]
        status = first.status
        message = f"{first.name}: {first.message} Score {score:g}/{max_score:g} ({summary})."
    else:
        status = Status.GRADED
        message = f"Score {score:g}/{max_score:g}: {summary}."
    if warnings:
        message += " Note: " + " ".join(warnings)
    return GradeResult(
        status=status, score=score, max_score=max_score, passed=passed and not unfinished,
        message=message, parts=tuple(parts), submission_sha256=submission_sha256,
        assignment=assignment.name, spec_version=assignment.version, environment=environment,
        flags=plausibility_flags(assignment, parts),
    )
