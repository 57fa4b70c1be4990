"""The typed assignment spec (one TOML file per assignment) and the grader's settings."""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from grader.datasets.spec import DatasetSpec, parse_datasets
from grader.errors import SpecError
from grader.parts import parse_part
from grader.parts.spec import PartSpec, no_extra, positive, take
from grader.sandbox.registry import BACKENDS, DEFAULT_BACKEND, unknown_backend

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HIDDEN_TESTS_DIR = PROJECT_ROOT / "hidden_tests"
DEFAULT_ASSIGNMENT = "cnn"


# --------------------------------------------------------------------------- spec types


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission; sizes in bytes, times in seconds."""

    upload_bytes: int = 200 * 2**20
    entry_bytes: int = 150 * 2**20
    total_bytes: int = 300 * 2**20
    max_entries: int = 64
    max_ratio: int = 200
    checkpoint_bytes: int = 150 * 2**20
    startup_s: float = 60.0
    memory_bytes: int = 4 * 2**30
    processes: int = 64
    output_bytes: int = 64 * 2**20
    tmp_bytes: int = 64 * 2**20
    cpus: float = 2.0
    log_bytes: int = 64 * 2**10


@dataclass(frozen=True)
class Files:
    required: tuple[str, ...]
    report: tuple[str, ...] = ()
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class Assignment:
    """A whole assignment spec, loaded from ``hidden_tests/<name>/assignment.toml``."""

    name: str
    title: str
    version: str
    upload_budget: int
    seed: int
    files: Files
    limits: Limits
    parts: tuple[PartSpec, ...]
    rank_by: str
    public_fraction: float
    deadlines: Mapping[str, datetime]
    bonus_points: tuple[int, ...]
    spec_dir: Path
    # The course's rule: only students who pass every part take a bonus place.
    bonus_requires_all_passed: bool = True
    kit: str = "kit"  # the lab's student kit, relative to the spec's folder

    @property
    def kit_dir(self) -> Path:
        """The student kit whose README section and constants ``grader render-kit`` writes."""
        return (self.spec_dir / self.kit).resolve()
    # The hidden sets ``[datasets.*]`` declares (grader.datasets.spec), by name.
    datasets: Mapping[str, DatasetSpec] = field(default_factory=dict)

    @property
    def max_score(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def ranked_part(self) -> str:
        """The part the board ranks by: "part" of ``rank_by = "part.metric"``."""
        return split_rank_by(self.rank_by)[0]

    @property
    def ranked_metric(self) -> str:
        """The metric of the ranked part the board ranks by: "metric" of "part.metric"."""
        return split_rank_by(self.rank_by)[1]

    @property
    def has_private_part(self) -> bool:
        """True when part of a hidden split stays private until the board freezes."""
        return self.public_fraction < 1.0 or any(
            split.public_fraction is not None and split.public_fraction < 1.0
            for d in self.datasets.values() for split in d.splits.values())

    def split_public_fraction(self, dataset: str, split: str) -> float:
        """The share of ``dataset``'s ``split`` the live board shows (the split's own, if declared)."""
        declared = self.datasets.get(dataset)
        own = declared.splits[split].public_fraction if declared and split in declared.splits else None
        return self.public_fraction if own is None else own

    def part(self, name: str) -> PartSpec:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(name)

    def public_summary(self, metrics: Mapping[str, float]) -> str:
        """The ranked metric on the public part, e.g. "weighted accuracy 81.0% on the public 50%
        of the hidden test set (A 80.0%, …)"; "" when ``metrics`` lacks it."""
        metric = self.ranked_metric
        if metric not in metrics:
            return ""
        part = self.part(self.ranked_part)
        splits = ", ".join(f"{part.label(k)} {metrics[k]:.1%}" for k in part.columns
                           if k in metrics and k != metric)
        return (f"{part.label(metric)} {metrics[metric]:.1%} on the public {self.public_fraction:.0%} of the "
                "hidden test set" + (f" ({splits})" if splits else ""))

    def award_bonus(self, all_passed: Sequence[bool]) -> list[int]:
        """Bonus points of the rows of a ranking, best first; ``all_passed[i]``: row i passed
        every part. With ``bonus_requires_all_passed`` the others get nothing and the bonus
        places go to the next rows that did; ranks themselves do not change.

        The one rule the board, the freeze and the CSVs use.
        """
        places = iter(self.bonus_points)
        awards = []
        for passed in all_passed:
            eligible = passed or not self.bonus_requires_all_passed
            awards.append(next(places, 0) if eligible else 0)
        return awards

    @property
    def sandbox_wall_s(self) -> float:
        """The longest one sandbox run may take: start-up plus every part's own limit."""
        return self.limits.startup_s + sum(p.time_limit_s for p in self.parts)


# --------------------------------------------------------------------------- spec loading


_take, _no_extra, _positive = take, no_extra, positive  # the spec's table checks, one place


def _limits(table: Mapping[str, Any]) -> Limits:
    where = "[limits]"
    allowed = {f.name for f in fields(Limits)}
    _no_extra(table, allowed, where)
    values: dict[str, Any] = {}
    for f in fields(Limits):
        if f.name in table:
            kind = float if f.type in ("float", float) else int
            values[f.name] = _take(table, f.name, kind, where)
            _positive(values[f.name], f.name, where)
    return Limits(**values)


def load_assignment(path: Path | str | None = None) -> Assignment:
    """Load and check a spec; a directory means its ``assignment.toml``, None the default."""
    path = Path(path) if path is not None else HIDDEN_TESTS_DIR / DEFAULT_ASSIGNMENT
    if path.is_dir():
        path = path / "assignment.toml"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: no such assignment spec") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: not valid TOML ({exc})") from exc
    try:
        return _assignment(raw, path.parent)
    except SpecError as exc:
        raise SpecError(f"{path}: {exc}") from None


def split_rank_by(rank_by: str) -> tuple[str, str]:
    """``"part.metric"`` -> (part, metric): the one place ``rank_by`` is taken apart."""
    part, _, metric = rank_by.partition(".")
    return part, metric


def _rank_by(board: Mapping[str, Any], parts: Sequence[PartSpec]) -> str:
    """``rank_by = "part.metric"``: a part with metrics and one of them; by default the main
    metric of the last part that has one."""
    measured = [p for p in parts if p.columns]
    if "rank_by" not in board:
        if not measured:
            raise SpecError("[leaderboard]: no part has a metric to rank by")
        return f"{measured[-1].name}.{measured[-1].main_metric}"
    rank_by = _take(board, "rank_by", str, "[leaderboard]")
    name, metric = split_rank_by(rank_by)
    part = next((p for p in parts if p.name == name), None)
    if part is None:
        raise SpecError(f"[leaderboard]: key 'rank_by' names an unknown part: {rank_by!r}")
    if metric not in part.columns:
        raise SpecError(f"[leaderboard]: key 'rank_by' names an unknown metric of {name}: {metric!r} "
                        f"(known: {', '.join(part.columns) or 'none'})")
    return rank_by


def _assignment(raw: Mapping[str, Any], spec_dir: Path) -> Assignment:
    _no_extra(raw, {"assignment", "files", "limits", "parts", "leaderboard", "deadlines", "bonus",
                    "datasets"}, "spec")
    head = _take(raw, "assignment", dict, "spec")
    _no_extra(head, {"name", "title", "version", "upload_budget", "seed", "kit"}, "[assignment]")
    files_t = _take(raw, "files", dict, "spec")
    _no_extra(files_t, {"required", "report", "alternatives"}, "[files]")
    required = _take(files_t, "required", list, "[files]")
    alternatives = {k: tuple(v) for k, v in files_t.get("alternatives", {}).items()}
    parts_t = _take(raw, "parts", dict, "spec")
    if not parts_t:
        raise SpecError("[parts]: needs at least one part")
    parts = tuple(parse_part(name, _take(parts_t, name, dict, "[parts]"), spec_dir)
                  for name in parts_t)
    board = raw.get("leaderboard", {})
    _no_extra(board, {"rank_by", "public_fraction"}, "[leaderboard]")
    public_fraction = float(board.get("public_fraction", 1.0))
    if not 0.0 < public_fraction <= 1.0:
        raise SpecError(f"[leaderboard]: key 'public_fraction' must lie in (0, 1], got {public_fraction}")
    rank_by = _rank_by(board, parts)
    deadlines = raw.get("deadlines", {})
    for key, value in deadlines.items():
        if not isinstance(value, datetime):
            raise SpecError(f"[deadlines]: key '{key}' must be a date-time like 2026-12-14T23:59:00Z")
    bonus = raw.get("bonus", {})
    _no_extra(bonus, {"points", "requires_all_passed"}, "[bonus]")
    bonus_points = tuple(bonus.get("points", ()))
    if any(not isinstance(b, int) or isinstance(b, bool) or b < 0 for b in bonus_points):
        raise SpecError("[bonus]: key 'points' must be a list of whole numbers >= 0")
    requires_all_passed = (
        _take(bonus, "requires_all_passed", bool, "[bonus]") if "requires_all_passed" in bonus else True
    )
    upload_budget = _take(head, "upload_budget", int, "[assignment]")
    _positive(upload_budget, "upload_budget", "[assignment]")
    return Assignment(
        name=_take(head, "name", str, "[assignment]"),
        title=str(head.get("title", head["name"])),
        version=str(_take(head, "version", str, "[assignment]")),
        upload_budget=upload_budget,
        seed=_take(head, "seed", int, "[assignment]"),
        files=Files(
            required=tuple(required),
            report=tuple(files_t.get("report", ())),
            alternatives=alternatives,
        ),
        limits=_limits(raw.get("limits", {})),
        parts=parts,
        rank_by=rank_by,
        public_fraction=public_fraction,
        deadlines=dict(deadlines),
        bonus_points=bonus_points,
        spec_dir=spec_dir,
        bonus_requires_all_passed=requires_all_passed,
        kit=_take(head, "kit", str, "[assignment]") if "kit" in head else "kit",
        datasets=_datasets(raw, parts, public_fraction),
    )


def _datasets(raw: Mapping[str, Any], parts: Sequence[PartSpec], public_fraction: float) -> Any:
    """``[datasets.*]``, checked against the parts that use them: each names a declared
    dataset, and a weighted part weights exactly its splits (one split without weights)."""
    datasets = parse_datasets(raw.get("datasets", {}), public_fraction=public_fraction)
    if not datasets:
        return datasets
    for part in parts:
        if not part.dataset:
            continue
        where = f"[parts.{part.name}]"
        if part.dataset not in datasets:
            raise SpecError(f"{where}: key 'dataset' names an undeclared dataset {part.dataset!r} "
                            f"(declared: {', '.join(datasets)})")
        splits = list(datasets[part.dataset].splits)
        if part.weights and set(part.weights) != set(splits):
            raise SpecError(f"{where}.weights: must weight exactly the splits of dataset "
                            f"{part.dataset!r}: {', '.join(splits)}")
        if not part.weights and len(splits) != 1:
            raise SpecError(f"{where}: dataset {part.dataset!r} has {len(splits)} splits "
                            f"({', '.join(splits)}); weight them with [parts.{part.name}.weights]")
    return datasets


# --------------------------------------------------------------------------- settings


def _default_home() -> Path:
    return Path(os.environ.get("GRADER_HOME", PROJECT_ROOT / "var"))


def parse_number(key: str, raw: str, kind: type[int] | type[float]) -> Any:
    """``raw`` (the value of setting ``key``) as ``kind``; SpecError naming the key if it is not one."""
    try:
        return kind(raw)
    except ValueError:
        raise SpecError(f"{key}={raw!r} is not a {'whole ' if kind is int else ''}number") from None


def _number(env: Mapping[str, str], key: str, kind: type[int] | type[float]) -> Any:
    """A non-negative number from the environment (0 when unset); SpecError naming the key."""
    raw = env.get(key, "").strip()
    value = parse_number(key, raw, kind) if raw else kind(0)
    if value < 0:
        raise SpecError(f"{key}={raw!r} must not be negative")
    return value


def _backend(name: str) -> str:
    if name not in BACKENDS:
        raise SpecError(f"GRADER_SANDBOX={name!r}: {unknown_backend(name)}")
    return name


@dataclass(frozen=True)
class SandboxSettings:
    """How student code is run. ``backend``: a name in ``grader.sandbox.registry.BACKENDS``."""

    backend: str = DEFAULT_BACKEND
    python: str = sys.executable  # the interpreter (with torch) the runner uses inside
    require_cgroups: bool = True  # refuse to run without memory/pids limits
    docker_image: str = "cnn-grader-runner:latest"
    work_dir: Path | None = None  # where per-run folders are made; default: a temp dir
    cpus: float = 0.0  # CPUs per sandbox; 0: the spec's limits.cpus, shared out among parallel jobs
    memory_bytes: int = 0  # memory per sandbox; 0: the spec's limits.memory_bytes
    # The worker and `grader batch` start the next job's sandbox while one runs (grader/warm.py).
    # Off by default until its speed-up is measured on a quiet machine (issue 15).
    prestart: bool = False
    prestart_max_wait_s: float = 600.0  # a pre-started sandbox not used by then is replaced


@dataclass(frozen=True)
class Settings:
    """Built once where the program starts and passed down; tests pass their own."""

    home: Path = field(default_factory=_default_home)
    assignment_path: Path = HIDDEN_TESTS_DIR / DEFAULT_ASSIGNMENT  # the default assignment
    course_dir: Path = HIDDEN_TESTS_DIR  # every <name>/assignment.toml in it: see grader.course
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)

    @property
    def data_dir(self) -> Path:
        """Where built hidden data lives; each assignment in its own ``<data_dir>/<name>/``."""
        return self.home / "hidden"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, overridden by ``GRADER_*`` variables, overridden by keyword arguments."""
        env = os.environ if environ is None else environ
        home = Path(env.get("GRADER_HOME", PROJECT_ROOT / "var"))
        sandbox = SandboxSettings(
            backend=_backend(env.get("GRADER_SANDBOX", DEFAULT_BACKEND)),
            python=env.get("GRADER_SANDBOX_PYTHON", sys.executable),
            require_cgroups=env.get("GRADER_REQUIRE_CGROUPS", "1") not in ("0", "false", "no"),
            docker_image=env.get("GRADER_DOCKER_IMAGE", "cnn-grader-runner:latest"),
            cpus=_number(env, "GRADER_SANDBOX_CPUS", float),
            memory_bytes=_number(env, "GRADER_SANDBOX_MEMORY_BYTES", int),
            prestart=env.get("GRADER_SANDBOX_PRESTART", "0") not in ("0", "false", "no", ""),
            prestart_max_wait_s=_number(env, "GRADER_SANDBOX_PRESTART_MAX_WAIT_S", float) or 600.0,
        )
        values: dict[str, Any] = {
            "home": home,
            "assignment_path": Path(env.get("GRADER_ASSIGNMENT", HIDDEN_TESTS_DIR / DEFAULT_ASSIGNMENT)),
            "course_dir": Path(env.get("GRADER_COURSE_DIR", HIDDEN_TESTS_DIR)),
            "sandbox": sandbox,
        }
        values.update(overrides)
        return cls(**values)
