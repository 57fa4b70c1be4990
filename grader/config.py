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

from grader.errors import SpecError
from grader.sandbox.registry import BACKENDS, DEFAULT_BACKEND, unknown_backend

PROJECT_ROOT = Path(__file__).resolve().parent.parent
HIDDEN_TESTS_DIR = PROJECT_ROOT / "hidden_tests"
DEFAULT_ASSIGNMENT = "cnn"
SPLITS = ("ORIG", "AUG", "NEW")
# A measured value this close to a pass line counts as on it: a weighted sum of exact
# accuracies (0.6 * 0.7 + 0.3 * 0.7 + 0.1 * 0.7) can come out a rounding error above 0.7.
PASS_TOLERANCE = 1e-9


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
class PartSpec:
    """One graded part: what to run, against which data, how it scores."""

    name: str
    title: str
    points: float
    module: str
    time_limit_s: float
    model_class: str = ""
    checkpoint: str = ""
    dataset: str = ""
    threshold: float = 0.0
    batch_size: int = 100
    scoring: str = "threshold"
    weights: Mapping[str, float] = field(default_factory=dict)
    # Plausibility ceiling of the part's main metric: a result above it is flagged for staff
    # (not hidden from the student, no score change). None: no ceiling.
    suspicious_above: float | None = None

    @property
    def main_metric(self) -> str:
        """The metric that decides pass/fail (and is checked against the ceiling)."""
        return "weighted" if self.weights else "accuracy"

    def passes(self, value: float) -> bool:
        """The course's pass rule: "better than" the threshold, strictly (70 % exactly fails).

        The one comparison the judge, the board, the CSVs and the exports use.
        """
        return value - self.threshold > PASS_TOLERANCE


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

    @property
    def max_score(self) -> float:
        return sum(p.points for p in self.parts)

    @property
    def ranked_part(self) -> str:
        """The part the board ranks by: "finetune" of ``rank_by = "finetune.weighted"``."""
        return split_rank_by(self.rank_by)[0]

    @property
    def ranked_metric(self) -> str:
        """The metric of the ranked part the board ranks by: "weighted" of "finetune.weighted"."""
        return split_rank_by(self.rank_by)[1]

    @property
    def has_private_part(self) -> bool:
        """True when part of each hidden split stays private until the board freezes."""
        return self.public_fraction < 1.0

    def part(self, name: str) -> PartSpec:
        for part in self.parts:
            if part.name == name:
                return part
        raise KeyError(name)

    def public_summary(self, metrics: Mapping[str, float]) -> str:
        """The ranked metric on the public part, e.g. "weighted 81.0% on the public 50% of the
        hidden test set (ORIG 80.0%, …)"; "" when ``metrics`` lacks it."""
        metric = self.ranked_metric
        if metric not in metrics:
            return ""
        splits = ", ".join(f"{k} {metrics[k]:.1%}" for k in self.part(self.ranked_part).weights
                           if k in metrics)
        return (f"{metric} {metrics[metric]:.1%} on the public {self.public_fraction:.0%} of the "
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


KNOWN_PART_KINDS = {"numpy_nn", "mynet", "finetune"}


def _take(table: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise SpecError(f"{where}: missing key '{key}'")
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise SpecError(f"{where}: key '{key}' must be {name}, got {value!r}")
    return value


def _no_extra(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        raise SpecError(f"{where}: unknown key '{extra[0]}' (allowed: {', '.join(sorted(allowed))})")


def _positive(value: float, key: str, where: str) -> None:
    if value <= 0:
        raise SpecError(f"{where}: key '{key}' must be positive, got {value!r}")


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


def _part(name: str, table: Mapping[str, Any]) -> PartSpec:
    where = f"[parts.{name}]"
    if name not in KNOWN_PART_KINDS:
        raise SpecError(f"{where}: unknown part (known: {', '.join(sorted(KNOWN_PART_KINDS))})")
    allowed = {f.name for f in fields(PartSpec)} - {"name"}
    _no_extra(table, allowed, where)
    points = _take(table, "points", float, where)
    _positive(points, "points", where)
    time_limit = _take(table, "time_limit_s", float, where)
    _positive(time_limit, "time_limit_s", where)
    threshold = float(table.get("threshold", 0.0))
    if not 0.0 <= threshold <= 1.0:
        raise SpecError(f"{where}: key 'threshold' must lie in [0, 1], got {threshold!r}")
    weights = dict(table.get("weights", {}))
    for split, weight in weights.items():
        if split not in SPLITS:
            raise SpecError(f"{where}.weights: unknown split '{split}' (known: {', '.join(SPLITS)})")
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight < 0:
            raise SpecError(f"{where}.weights: key '{split}' must be a number >= 0")
    if name == "finetune":
        if set(weights) != set(SPLITS):
            raise SpecError(f"{where}.weights: needs exactly {', '.join(SPLITS)}")
        if abs(sum(weights.values()) - 1.0) > 1e-9:
            raise SpecError(f"{where}.weights: the weights must add up to 1, not {sum(weights.values())}")
    batch_size = int(table.get("batch_size", 100))
    _positive(batch_size, "batch_size", where)
    scoring = table.get("scoring", "threshold")
    if scoring not in ("threshold", "per_test"):
        raise SpecError(f"{where}: key 'scoring' must be 'threshold' or 'per_test'")
    if name != "numpy_nn":
        for key in ("model_class", "checkpoint", "dataset"):
            _take(table, key, str, where)
    ceiling = _ceiling(name, table, threshold, where)
    return PartSpec(
        name=name,
        title=str(table.get("title", name)),
        points=points,
        module=_take(table, "module", str, where),
        time_limit_s=time_limit,
        model_class=table.get("model_class", ""),
        checkpoint=table.get("checkpoint", ""),
        dataset=table.get("dataset", ""),
        threshold=threshold,
        batch_size=batch_size,
        scoring=scoring,
        weights={k: float(v) for k, v in weights.items()},
        suspicious_above=ceiling,
    )


def _ceiling(name: str, table: Mapping[str, Any], threshold: float, where: str) -> float | None:
    """``suspicious_above``: in (0, 1], above the pass threshold, only where there is a metric."""
    if "suspicious_above" not in table:
        return None
    if name == "numpy_nn":
        raise SpecError(f"{where}: key 'suspicious_above' needs a part with an accuracy "
                        "(mynet, finetune); the layer tests have none")
    value = _take(table, "suspicious_above", float, where)
    if not 0.0 < value <= 1.0:
        raise SpecError(f"{where}: key 'suspicious_above' must lie in (0, 1], got {value!r}")
    if value <= threshold:
        raise SpecError(f"{where}: key 'suspicious_above' ({value:g}) must be above the pass "
                        f"threshold ({threshold:g})")
    return value


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


def _assignment(raw: Mapping[str, Any], spec_dir: Path) -> Assignment:
    _no_extra(raw, {"assignment", "files", "limits", "parts", "leaderboard", "deadlines", "bonus"}, "spec")
    head = _take(raw, "assignment", dict, "spec")
    _no_extra(head, {"name", "title", "version", "upload_budget", "seed"}, "[assignment]")
    files_t = _take(raw, "files", dict, "spec")
    _no_extra(files_t, {"required", "report", "alternatives"}, "[files]")
    required = _take(files_t, "required", list, "[files]")
    alternatives = {k: tuple(v) for k, v in files_t.get("alternatives", {}).items()}
    parts_t = _take(raw, "parts", dict, "spec")
    if not parts_t:
        raise SpecError("[parts]: needs at least one part")
    parts = tuple(_part(name, table) for name, table in parts_t.items())
    board = raw.get("leaderboard", {})
    _no_extra(board, {"rank_by", "public_fraction"}, "[leaderboard]")
    public_fraction = float(board.get("public_fraction", 1.0))
    if not 0.0 < public_fraction <= 1.0:
        raise SpecError(f"[leaderboard]: key 'public_fraction' must lie in (0, 1], got {public_fraction}")
    rank_by = str(board.get("rank_by", "finetune.weighted"))
    if split_rank_by(rank_by)[0] not in {p.name for p in parts}:
        raise SpecError(f"[leaderboard]: key 'rank_by' names an unknown part: {rank_by!r}")
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
    )


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
        )
        values: dict[str, Any] = {
            "home": home,
            "assignment_path": Path(env.get("GRADER_ASSIGNMENT", HIDDEN_TESTS_DIR / DEFAULT_ASSIGNMENT)),
            "course_dir": Path(env.get("GRADER_COURSE_DIR", HIDDEN_TESTS_DIR)),
            "sandbox": sandbox,
        }
        values.update(overrides)
        return cls(**values)
