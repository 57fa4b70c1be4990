"""The course page: every assignment with its deadlines; ``/`` when the course has several."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, redirect, render_template, url_for

from leaderboard.context import services
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


@bp.route("/a/<name>/")
def lab_home(name: str) -> Any:
    """An assignment's own address: its board."""
    if name not in services().course:
        abort(404, f"There is no assignment named {name!r} here.")
    return redirect(url_for("board.leaderboard", assignment=name))
