"""The course page: every assignment with its deadlines; ``/`` when the course has several."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from leaderboard.app import services
from leaderboard.views import board

bp = Blueprint("course", __name__)
DEADLINES = ("opens", "bonus", "final")


@bp.route("/")
def index() -> Any:
    """One assignment: its board, as before the course page existed; several: the course."""
    if len(services().course) == 1:
        return board.leaderboard()
    return course()


@bp.route("/course")
def course() -> Any:
    labs = [
        (each, [(key, each.spec.deadlines[key]) for key in DEADLINES if key in each.spec.deadlines])
        for each in services().labs()
    ]
    return render_template("course.html", labs=labs)
