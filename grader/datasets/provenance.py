"""Where a hidden data set comes from, and the one sentence every result shows for it.

A hidden set is only as hidden as its source. ``private``: the instructor's own data, never
published (the production path). ``public``: a published set such as FashionMNIST's t10k
files; anyone, students included, can have its labels, so a model can carry them (inside
a checkpoint, say) and score 100 % without classifying anything. ``synthetic``: a generated
stand-in (the dogs and cats of the demo), not real data. The manifest records it per data
set, ``grader.pipeline`` copies it into each result's ``environment.data``, and the CLI and
the pages show :func:`data_notes` of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class Provenance(StrEnum):
    """The source of one hidden data set."""

    PRIVATE = "private"
    PUBLIC = "public"
    SYNTHETIC = "synthetic"


# What results built by older versions recorded in ``environment.data``.
_LEGACY = {"synthetic stand-in": Provenance.SYNTHETIC}

CAVEATS: Mapping[Provenance, str] = {
    Provenance.PUBLIC: (
        "is a PUBLIC data set: anyone can have its labels, so a score on it can be forged "
        "(a private set is what real grading needs)"
    ),
    Provenance.SYNTHETIC: "is a synthetic stand-in data set, not real photos",
}


def provenance_of(value: Any) -> Provenance | None:
    """The provenance an ``environment.data`` value names; None when it names none."""
    if isinstance(value, str):
        if value in _LEGACY:
            return _LEGACY[value]
        try:
            return Provenance(value)
        except ValueError:
            return None
    return None


def data_notes(environment: Mapping[str, Any] | None) -> list[str]:
    """One sentence per data set of a result that is not private, e.g. "dogs_cats is a
    synthetic stand-in data set, not real photos"; [] for private sets or no record."""
    data = environment.get("data") if environment else None
    if not isinstance(data, Mapping):
        return []
    notes = []
    for name, value in data.items():
        provenance = provenance_of(value)
        if provenance is not None and provenance in CAVEATS:
            notes.append(f"{name} {CAVEATS[provenance]}")
    return notes
