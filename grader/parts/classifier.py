"""The ``classifier`` kind: a trained model, loaded from its checkpoint, on hidden splits.

Spec keys besides the common ones: ``module``, ``model_class``, ``checkpoint``, ``dataset``
(a dataset of the built hidden data), ``batch_size``, ``metrics`` (per split, from
:data:`grader.parts.metrics.METRICS`; the first decides pass/fail), ``weights`` (split ->
weight, adding up to 1: the part then reports each split and their weighted sum, with any
split names; without weights the dataset has one split) and ``suspicious_above``.

Metric keys in results: with weights, the first metric is keyed by the split's name and the
weighted sum by ``weighted`` (``TEST``, ``ROTATED``, ``weighted``), other metrics by
``<split>_<metric>`` and ``weighted_<metric>``; without weights, by the metric's name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grader.errors import GraderFault, SpecError
from grader.parts.common import JobContext, PartRun, not_run, pct, public_mask
from grader.parts.diagnostics import diagnostics
from grader.parts.metrics import METRICS
from grader.parts.spec import COMMON_KEYS, PartSpec, common_fields, positive, take
from grader.result import PartResult, Status, TestResult
from grader.untrusted import ForgedOutput, read_npy

KEYS = COMMON_KEYS | {"model_class", "checkpoint", "dataset", "batch_size", "metrics", "weights",
                      "suspicious_above"}
COMBINED = "weighted"
MAX_PREDICTION_BYTES = 64 * 2**20
MAX_PREDICTION_FACTOR = 16  # values a predictions file may hold, per expected prediction


# --------------------------------------------------------------------------- spec


def key(spec_weights: Mapping[str, float], metric: str, primary: str, split: str | None) -> str:
    """The result key of ``metric`` on ``split`` (None: the weighted sum, or the only split)."""
    if not spec_weights:
        return metric
    where = split if split is not None else COMBINED
    return where if metric == primary else f"{where}_{metric}"


def parse(name: str, table: Mapping[str, Any], where: str, spec_dir: Path) -> PartSpec:
    common = common_fields(name, table, where)
    weights = dict(take(table, "weights", dict, where)) if "weights" in table else {}
    for split, weight in weights.items():
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
            raise SpecError(f"{where}.weights: key '{split}' must be a number >= 0")
    if weights and abs(sum(weights.values()) - 1.0) > 1e-9:
        raise SpecError(f"{where}.weights: the weights must add up to 1, not {sum(weights.values())}")
    metrics = tuple(take(table, "metrics", list, where)) if "metrics" in table else ("accuracy",)
    for metric in metrics:
        if metric not in METRICS:
            raise SpecError(f"{where}: key 'metrics': unknown metric {metric!r} "
                            f"(known: {', '.join(METRICS)})")
    if not metrics or len(set(metrics)) != len(metrics):
        raise SpecError(f"{where}: key 'metrics' must name one or more metrics, each once")
    batch_size = take(table, "batch_size", int, where) if "batch_size" in table else 100
    positive(batch_size, "batch_size", where)
    primary = metrics[0]
    columns: list[str] = []
    labels: dict[str, str] = {}
    for metric in metrics:
        label = METRICS[metric].label
        if weights:
            for split in (*weights, None):
                column = key(weights, metric, primary, split)
                columns.append(column)
                labels[column] = (split if metric == primary else f"{split} {label}") \
                    if split is not None else f"{COMBINED} {label}"
        else:
            columns.append(metric)
            labels[metric] = label
    return PartSpec(
        **common,
        model_class=take(table, "model_class", str, where),
        checkpoint=take(table, "checkpoint", str, where),
        dataset=take(table, "dataset", str, where),
        batch_size=batch_size,
        weights={k: float(v) for k, v in weights.items()},
        metrics=metrics,
        suspicious_above=_ceiling(table, common["threshold"], where),
        columns=tuple(columns),
        labels=labels,
        main_metric=key(weights, primary, primary, None),
    )


def _ceiling(table: Mapping[str, Any], threshold: float, where: str) -> float | None:
    """``suspicious_above``: in (0, 1], above the pass threshold."""
    if "suspicious_above" not in table:
        return None
    value = take(table, "suspicious_above", float, where)
    if not 0.0 < value <= 1.0:
        raise SpecError(f"{where}: key 'suspicious_above' must lie in (0, 1], got {value!r}")
    if value <= threshold:
        raise SpecError(f"{where}: key 'suspicious_above' ({value:g}) must be above the pass "
                        f"threshold ({threshold:g})")
    return value


# --------------------------------------------------------------------------- plan


def _dataset(spec: PartSpec, job: JobContext) -> Any:
    try:
        dataset = job.manifest.datasets[spec.dataset]
    except KeyError:
        raise GraderFault(
            f"The hidden data has no dataset '{spec.dataset}'; rebuild it with `grader build-tests`."
        ) from None
    splits = list(dataset.splits)
    if spec.weights and set(splits) != set(spec.weights):
        raise GraderFault(
            f"The hidden dataset '{spec.dataset}' has the splits {', '.join(splits)}, but the spec's "
            f"[parts.{spec.name}.weights] names {', '.join(spec.weights)}; rebuild the data or fix the spec."
        )
    if not spec.weights and len(splits) != 1:
        raise GraderFault(
            f"The hidden dataset '{spec.dataset}' has {len(splits)} splits; [parts.{spec.name}] "
            "needs weights for them."
        )
    return dataset


def plan(spec: PartSpec, job: JobContext) -> dict[str, Any]:
    dataset = _dataset(spec, job)
    order = list(spec.weights) or list(dataset.splits)
    limits = job.assignment.limits
    return {
        "model_class": spec.model_class,
        "checkpoint": job.checkpoint_name(spec.checkpoint),
        "checkpoint_max_bytes": limits.checkpoint_bytes,
        "batch_size": spec.batch_size,
        "splits": [
            {"name": name, "inputs": _inputs(job, dataset.splits[name].inputs)} for name in order
        ],
        "outputs": [f"{name}.npy" for name in order],
    }


def _inputs(job: JobContext, path: Path) -> str:
    """A split's inputs file relative to the inputs folder mounted in the sandbox."""
    absolute = path if path.is_absolute() else job.manifest.root / path
    return absolute.relative_to(job.manifest.inputs_dir).as_posix()


# --------------------------------------------------------------------------- judge


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


def judge(spec: PartSpec, run: PartRun, job: JobContext) -> PartResult:
    dataset = _dataset(spec, job)
    truth: dict[str, np.ndarray] = {}
    public: dict[str, np.ndarray] = {}
    for name in list(spec.weights) or list(dataset.splits):
        split = dataset.splits[name]
        labels_path = split.labels if split.labels.is_absolute() else job.manifest.root / split.labels
        labels = np.load(labels_path, allow_pickle=False)
        truth[name] = labels
        fraction = job.assignment.split_public_fraction(spec.dataset, name)
        public[name] = public_mask(len(labels), fraction, job.assignment.seed, f"{spec.dataset}/{name}")
    return judge_splits(spec, run, truth, public, len(dataset.classes), dataset.title,
                        predictions=job.predictions, classes=dataset.classes)


def judge_splits(
    spec: PartSpec,
    run: PartRun,
    truth: Mapping[str, np.ndarray],
    public: Mapping[str, np.ndarray],
    num_classes: int,
    dataset_title: str,
    *,
    predictions: dict[str, np.ndarray] | None = None,
    classes: Sequence[str] = (),
) -> PartResult:
    """The spec's metrics per split (whole, public and private part), the weighted sums where
    the spec weights splits, pass/fail on the first metric, points, and the diagnostics on the
    public part (``grader.parts.diagnostics``). ``classes``: the dataset's class names
    (default: the class indices)."""
    metrics: dict[str, float] = {}
    public_metrics: dict[str, float] = {}
    private_metrics: dict[str, float] = {}
    problems: list[str] = []
    checked: dict[str, np.ndarray] = {}
    primary = spec.metrics[0]
    for split, labels in truth.items():
        got, why = (load_predictions(run.out_dir / f"{split}.npy", len(labels), num_classes)
                    if run.out_dir is not None else (None, "no predictions were written"))
        if got is None:
            problems.append(f"{split}: {why}")
            continue
        checked[split] = got
        if predictions is not None:
            predictions[f"{spec.name}/{split}"] = got
        mask = public[split]
        for metric in spec.metrics:
            compute = METRICS[metric].compute
            column = key(spec.weights, metric, primary, split)
            metrics[column] = compute(got, labels, num_classes)
            public_metrics[column] = compute(got[mask], labels[mask], num_classes) if mask.any() else 0.0
            if not mask.all():
                private_metrics[column] = compute(got[~mask], labels[~mask], num_classes)
    if spec.weights:
        for metric in spec.metrics:
            for found in (metrics, public_metrics, private_metrics):
                parts = [key(spec.weights, metric, primary, s) for s in spec.weights]
                if all(p in found for p in parts):
                    found[key(spec.weights, metric, primary, None)] = sum(
                        w * found[p] for w, p in zip(spec.weights.values(), parts, strict=True))
    stopped = not_run(spec, run)
    value = metrics.get(spec.main_metric)
    passed = not problems and stopped is None and value is not None and spec.passes(value)
    if stopped is not None:
        return PartResult(
            name=spec.name, status=stopped.status, score=0.0, max_score=spec.points, passed=False,
            message=stopped.message, metrics=metrics, public_metrics=public_metrics,
            private_metrics=private_metrics, detail=run.detail, runtime_s=run.runtime_s,
        )
    label = METRICS[primary].label
    order = list(spec.weights) or list(truth)
    found = diagnostics(
        checked, truth, public,
        list(classes) if len(classes) == num_classes else [str(i) for i in range(num_classes)],
        public_values={s: public_metrics[k] for s in order
                       if (k := key(spec.weights, primary, primary, s)) in public_metrics},
        order=order if spec.weights else [], metric=label,
    )
    verdict = "passed" if passed else "not passed"
    if problems:
        message = f"{spec.model_class}: the predictions could not be used ({'; '.join(problems)})."
    elif spec.weights:
        terms = " + ".join(f"{w:g}·{s} {pct(metrics[s])}" for s, w in spec.weights.items())
        message = (f"{spec.model_class}: weighted {label} {pct(metrics[spec.main_metric])} = {terms}; "
                   f"{verdict} (pass above {pct(spec.threshold)}).")
    else:
        what = "" if primary == "accuracy" else f"{label} "
        message = (f"{spec.model_class}: {what}{pct(metrics[spec.main_metric])} on the hidden "
                   f"{dataset_title}; {verdict} (pass above {pct(spec.threshold)}).")
    tests = tuple(
        TestResult(f"{spec.model_class} {label} on {s}", spec.passes(metrics.get(k, 0.0)),
                   pct(metrics[k]) if k in metrics else "not measured")
        for s, k in ((s, key(spec.weights, primary, primary, s)) for s in truth)
    )
    return PartResult(
        name=spec.name, status=Status.GRADED, score=spec.points if passed else 0.0,
        max_score=spec.points, passed=passed, message=message, metrics=metrics,
        public_metrics=public_metrics, private_metrics=private_metrics, tests=tests,
        diagnostics=found, detail=run.detail, runtime_s=run.runtime_s,
    )
