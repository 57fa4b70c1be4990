"""The public leaderboard page (no sign-in) and its live twin at /api/leaderboard."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, render_template, request, session
from markupsafe import Markup

from leaderboard.context import db, lab, services
from leaderboard.openapi import Answer, operation
from leaderboard.ranking import Board, BoardRow
from leaderboard.views.auth import current_student

bp = Blueprint("board", __name__)


def current_board() -> tuple[Board, dict[str, Any]]:
    return services().board_cache.get(db(), spec=lab().spec)


def etag(board: Board) -> str:
    return f'"{board.assignment}-{board.version}"'


def prepare(board: Board, cache: dict[str, Any]) -> None:
    """Render the table and the JSON once per board version (called by the cache)."""
    cache["json"] = json.dumps(board.to_dict(), separators=(",", ":")).encode()
    cache["table"] = Markup(render_template("_board_table.html", board=board, me=None))


def my_row(board: Board, student_id: int | None) -> BoardRow | None:
    """The signed-in student's row on ``board``, if they have one."""
    return next((r for r in board.rows if r.student_id == student_id), None)


@bp.route("/leaderboard")
def leaderboard() -> Any:
    board, cache = current_board()
    # Visitors who are not signed in (and have no message waiting) all get the same page.
    anonymous = "role" not in session and "_flashes" not in session
    if anonymous and "page" in cache:
        return Response(cache["page"], mimetype="text/html")
    student = current_student()
    table = cache["table"]
    if student is not None:  # their own row marked: rendered for them, not cached
        table = Markup(render_template("_board_table.html", board=board, me=student.id))
    html = render_template(
        "leaderboard.html",
        board=board,
        table=table,
        student=student,
        me=my_row(board, student.id) if student else None,
        poll_s=services().settings.board_poll_interval_s,
    )
    if anonymous:
        cache["page"] = html.encode()
    return html


@bp.route("/api/leaderboard")
@operation("The leaderboard (no sign-in)", tag="leaderboard",
           description="Send the last `ETag` as `If-None-Match` to get 304 while it has not changed.",
           header_params={"If-None-Match": "The ETag of the board you have."},
           answers={200: Answer("The board.", "Leaderboard", headers={"ETag": "This board's version."}),
                    304: Answer("Not changed since the ETag you sent.", "", media_type="")})
def api_leaderboard() -> Response:
    board, cache = current_board()
    tag = etag(board)
    if tag in request.headers.get("If-None-Match", ""):
        response = Response(status=304)
    else:
        response = Response(cache["json"], mimetype="application/json")
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = "no-cache"
    return response
