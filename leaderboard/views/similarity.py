"""Staff only: pairs of students whose weights, predictions or code are alike (the Similarity pages).

Thin: everything shown is read from the assignment's stored index (``leaderboard.similarity_pages``);
nothing is compared while a page is built, so it is as quick for 1,000 students as for 10.
Every flag is evidence for a person to judge; nothing here changes a score.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, render_template, request

from leaderboard.context import db, lab, services
from leaderboard.similarity_pages import SHARED_START_NOTE, legend, overview, pair_detail
from leaderboard.views.auth import instructor_required

bp = Blueprint("similarity", __name__, url_prefix="/staff/similarity")
PER_PAGE = 100


@bp.route("/")
@instructor_required
def pairs() -> Any:
    svc = services()
    page = max(1, request.args.get("page", 1, type=int))
    here = lab()
    found = overview(db(), settings=svc.settings, spec=here.spec, assignment_id=here.id,
                     page=page, per_page=PER_PAGE)
    return render_template("staff/similarity.html", found=found, page=page,
                           pages=max(1, (found.total + PER_PAGE - 1) // PER_PAGE),
                           legend=legend(), shared_start_note=SHARED_START_NOTE)


@bp.route("/<int:a>/<int:b>")
@instructor_required
def pair(a: int, b: int) -> Any:
    svc = services()
    detail = pair_detail(db(), settings=svc.settings, spec=lab().spec, a=a, b=b)
    if detail is None:
        abort(404, "No such pair in the similarity index.")
    return render_template("staff/similarity_pair.html", d=detail, legend=legend(),
                           shared_start_note=SHARED_START_NOTE)
