"""The course: which assignments exist and how one is found by name (the one place for it).

Each assignment is a folder ``<course_dir>/<name>/`` holding ``assignment.toml``, whose
``[assignment] name`` is the folder's name. Every command that takes ``--assignment NAME``,
the web app and the worker find assignments through this module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from grader.config import Assignment, Settings, load_assignment
from grader.errors import SpecError

SPEC_FILE = "assignment.toml"


def assignment_dirs(course_dir: Path) -> dict[str, Path]:
    """Name -> folder of every assignment under ``course_dir``, sorted by name."""
    if not course_dir.is_dir():
        return {}
    return {p.parent.name: p.parent for p in sorted(course_dir.glob(f"*/{SPEC_FILE}"))}


def find_assignment(name: str, course_dir: Path) -> Path:
    """The folder of assignment ``name``; a folder or TOML path is taken as it is.

    SpecError (naming the known assignments) when there is no such assignment.
    """
    found = assignment_dirs(course_dir)
    if name in found:
        return found[name]
    path = Path(name)
    if path.is_file() or (path / SPEC_FILE).is_file():
        return path
    known = ", ".join(found) or "none"
    raise SpecError(f"no assignment named {name!r} in {course_dir} (known: {known})")


def load_named(name: str, course_dir: Path) -> Assignment:
    """Load assignment ``name`` (or a spec path); its spec must carry the folder's name."""
    folder = find_assignment(name, course_dir)
    spec = load_assignment(folder)
    if folder.parent == course_dir and spec.name != folder.name:
        raise SpecError(f"{folder / SPEC_FILE}: [assignment] name is {spec.name!r} but its folder "
                        f"is {folder.name!r}; they must be the same")
    return spec


def selected(settings: Settings, name: str | None = None) -> Assignment:
    """``--assignment NAME`` when given, else the settings' own (``GRADER_ASSIGNMENT``); the
    settings' own is found by its name too, wherever its folder is (as ``load_course`` has it)."""
    if name:
        try:
            default = load_assignment(settings.assignment_path)
        except SpecError:
            default = None  # a broken default does not stop another assignment
        if default is not None and name == default.name:
            return default
        return load_named(name, settings.course_dir)
    return load_assignment(settings.assignment_path)


@dataclass(frozen=True)
class Course:
    """Every assignment one service runs, by name; ``default`` is the settings' own."""

    assignments: Mapping[str, Assignment]
    default: str

    def __iter__(self) -> Iterator[Assignment]:
        return iter(self.assignments.values())

    def __len__(self) -> int:
        return len(self.assignments)

    def __contains__(self, name: object) -> bool:
        return name in self.assignments

    def get(self, name: str | None = None) -> Assignment:
        """Assignment ``name`` (the default when None); SpecError listing the known names."""
        key = name or self.default
        if key not in self.assignments:
            raise SpecError(f"no assignment named {key!r} (known: {', '.join(self.assignments)})")
        return self.assignments[key]


def load_course(settings: Settings) -> Course:
    """The default assignment (``settings.assignment_path``) and every one in ``course_dir``.

    Assignments are ordered by their opening date, then name.
    """
    default = load_assignment(settings.assignment_path)
    found = {default.name: default}
    for name in assignment_dirs(settings.course_dir):
        if name != default.name:
            found[name] = load_named(name, settings.course_dir)
    order = sorted(found.values(), key=lambda a: (a.deadlines.get("opens") is None,
                                                  str(a.deadlines.get("opens", "")), a.name))
    return Course({a.name: a for a in order}, default.name)


ASSIGNMENT_HELP = ("The assignment: its name under the course folder (hidden_tests/, or "
                   "$GRADER_COURSE_DIR), or a spec folder or TOML file; default: $GRADER_ASSIGNMENT "
                   "or cnn.")
