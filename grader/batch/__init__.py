"""Instructor batch grading: find submissions, grade them in parallel, keep results, export.

    discover.py   a folder or zip -> submissions with student ids (safe outer-zip extraction)
    store.py      the results store: one JSON per (zip SHA-256, spec version), archives kept
    run.py        N grading threads, Ctrl-C, each sandbox's CPU share
    progress.py   the progress bar (terminal) or one line per finished zip
    grading.py    batch and regrade: discover -> skip what is done -> run -> store -> publish
    csvout.py     one CSV row per student
    cli.py        the ``batch``, ``regrade`` and ``export`` commands
"""

from __future__ import annotations


class BatchError(Exception):
    """A problem with what the instructor asked for (no such folder, bad pattern); ``message`` says it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
