"""Part kinds: the seam between an assignment's spec and the engine.

A part's ``kind`` names an entry of :data:`KINDS`; the kind owns the part's spec keys, its
entry in the runner's plan (the runner picks its side by the same name), its judge and the
metrics it shows (``PartSpec.columns``). Everything outside this package goes through the
three functions below and never asks which part or split it is looking at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader.errors import SpecError
from grader.parts import classifier, layers
from grader.parts.common import JobContext, PartRun
from grader.parts.spec import PartSpec, no_extra, take
from grader.result import PartResult

__all__ = ["KINDS", "JobContext", "PartRun", "PartSpec", "judge_part", "parse_part", "plan_entry"]


@dataclass(frozen=True)
class Kind:
    keys: frozenset[str]  # the keys its [parts.<name>] table may have
    parse: Callable[[str, Mapping[str, Any], str, Path], PartSpec]
    plan: Callable[[PartSpec, JobContext], dict[str, Any]]
    judge: Callable[[PartSpec, PartRun, JobContext], PartResult]


KINDS: dict[str, Kind] = {
    "layers": Kind(frozenset(layers.KEYS), layers.parse, layers.plan, layers.judge),
    "classifier": Kind(frozenset(classifier.KEYS), classifier.parse, classifier.plan, classifier.judge),
}


def parse_part(name: str, table: Mapping[str, Any], spec_dir: Path) -> PartSpec:
    """A ``[parts.<name>]`` table, checked by its kind."""
    where = f"[parts.{name}]"
    kind_name = take(table, "kind", str, where)
    kind = KINDS.get(kind_name)
    if kind is None:
        raise SpecError(f"{where}: unknown kind {kind_name!r} (known: {', '.join(KINDS)})")
    no_extra(table, kind.keys, where)
    return kind.parse(name, table, where, spec_dir)


def plan_entry(spec: PartSpec, job: JobContext) -> dict[str, Any]:
    """The runner's plan for one part: what every kind has, then the kind's own entries.
    ``outputs``: the files the part may leave in its output folder (the rest is removed)."""
    return {"name": spec.name, "title": spec.title, "kind": spec.kind, "module": spec.module,
            **KINDS[spec.kind].plan(spec, job)}


def judge_part(spec: PartSpec, run: PartRun, job: JobContext) -> PartResult:
    return KINDS[spec.kind].judge(spec, run, job)
