"""The course's URLs: every per-assignment page also answers under ``/a/<name>/…``.

The single-assignment URLs (``/leaderboard``, ``/upload``, ``/staff/…``, ``/api/…``) keep
serving the course's default assignment; ``/a/<name>/leaderboard`` and the like serve any
assignment of the course. ``url_for`` inside a request for another assignment adds its name
by itself, so templates and views name no assignment; links to the default one stay short.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, abort, g

from leaderboard.context import lab, services

PREFIX = "/a/<assignment>"
# Blueprints whose pages are about one assignment, and the endpoints of theirs that are not.
PER_ASSIGNMENT = ("board", "student", "staff", "staff_people", "similarity", "api")
COURSE_WIDE = {"student.profile", "staff.health_json", "staff.gradebook_csv", "api.openapi_json",
               "api.docs", "staff_people.roster", "staff_people.export_secrets",
               "staff_people.reset_secret"}


def _per_assignment(endpoint: str) -> bool:
    return endpoint.partition(".")[0] in PER_ASSIGNMENT and endpoint not in COURSE_WIDE


def _take_assignment(endpoint: str | None, values: dict[str, Any] | None) -> None:
    """``/a/<name>/…``: remember the assignment for ``lab()``; 404 for one the course lacks."""
    if values and "assignment" in values:
        name = values.pop("assignment")
        if name not in services().course:
            abort(404, f"There is no assignment named {name!r} here.")
        g.assignment = name


def _add_assignment(endpoint: str, values: dict[str, Any]) -> None:
    """Links from a page of one assignment stay in it; the default one keeps its short URLs."""
    if not _per_assignment(endpoint):
        return
    name = values.get("assignment") or g.get("assignment")
    if name and name != services().course.default:
        values["assignment"] = name
    else:
        values.pop("assignment", None)


def init_app(app: Flask) -> None:
    """Add the ``/a/<name>`` twin of every per-assignment rule (after the blueprints)."""
    for rule in list(app.url_map.iter_rules()):
        if rule.endpoint and _per_assignment(rule.endpoint):
            methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
            app.add_url_rule(PREFIX + rule.rule, endpoint=rule.endpoint, methods=methods)
    app.url_value_preprocessor(_take_assignment)
    app.url_defaults(_add_assignment)
    app.context_processor(_labs)


def _labs() -> dict[str, Any]:
    """For the header: this request's assignment, and every one when the course has several."""
    svc = services()
    return {"current_lab": lab(), "course_labs": svc.labs() if len(svc.course) > 1 else []}
