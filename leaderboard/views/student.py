"""Student pages: upload, the list of one's submissions, one submission, the display name."""

from __future__ import annotations

import logging
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge

from grader.config import Assignment
from grader.datasets.provenance import data_notes
from grader.visible import public_only
from leaderboard.accounts import AccountError, set_display_name
from leaderboard.bodies import drain, too_large_message
from leaderboard.charts import ScoreChart, score_chart
from leaderboard.context import db, is_frozen, lab, load_result, services, upload_limit
from leaderboard.live import live_parts, progress_brief, progress_sentence, queue_position, waiting_parts
from leaderboard.models import Student, Submission, SubmissionStatus
from leaderboard.present import part_views, ranked_text, reason_text, score_text
from leaderboard.ranking import bump_board
from leaderboard.security import error_response
from leaderboard.uploads import (
    UploadRefused,
    human_bytes,
    receive_upload,
    remaining_attempts,
    student_submissions,
    upload_too_large_message,
)
from leaderboard.views.auth import current_student, student_required

log = logging.getLogger(__name__)

bp = Blueprint("student", __name__)


def _remaining(student: Student) -> int:
    here = lab()
    return remaining_attempts(
        db(), student_id=student.id or 0, assignment_id=here.id, budget=here.spec.upload_budget
    )


def _wants_json() -> bool:
    """The upload page's script sends the form itself (to show progress) and reads JSON."""
    return request.accept_mimetypes.best == "application/json"


def _upload_page(student: Student, *, error: str = "", status: int = 200, retry_after_s: int = 0) -> Response:
    """The upload form, with ``error`` above it (the form is kept, so the student can retry)."""
    spec = lab().spec
    if _wants_json() and error:
        response = jsonify({"error": error, "status": status})
        response.status_code = status
    else:
        limit = upload_limit()
        response = Response(
            render_template(
                "upload.html",
                student=student,
                remaining=_remaining(student),
                budget=spec.upload_budget,
                max_size=human_bytes(limit),
                max_bytes=limit,
                too_large=upload_too_large_message(limit),
                required=spec.files.required,
                # What the page's script checks in a chosen zip before sending it.
                zip_rules={"required": list(spec.files.required),
                           "alternatives": {k: list(v) for k, v in spec.files.alternatives.items()}},
                error=error,
            ),
            status=status,
        )
    if retry_after_s:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


@bp.route("/upload", methods=["GET", "POST"])
@student_required
def upload() -> Any:
    student = current_student()
    assert student is not None
    if request.method == "GET":
        return _upload_page(student)
    file = request.files.get("file")
    if file is None or not file.filename:
        return _upload_page(student, error="Choose your submission zip first.", status=400)
    try:
        sub = receive_upload(db(), services(), lab(), student_id=student.id or 0, stream=file.stream,
                             filename=file.filename, max_bytes=upload_limit())
    except UploadRefused as exc:
        return _upload_page(
            student, error=exc.message, status=exc.http_status, retry_after_s=exc.retry_after_s
        )
    flash(f"Uploaded {sub.filename}; it is queued for grading.")
    if _wants_json():
        return jsonify({"location": url_for("student.submissions"), "id": sub.id})
    return redirect(url_for("student.submissions"))


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Any:
    """A body over the limit on the upload page: the page again, with the true 413 message."""
    student = current_student() if request.endpoint == "student.upload" else None
    if student is None:
        return error_response(exc)
    drain()
    return _upload_page(student, error=too_large_message(), status=413)


@bp.route("/submissions")
@student_required
def submissions() -> Any:
    student = current_student()
    assert student is not None
    here = lab()
    rows = student_submissions(db(), student_id=student.id, assignment_id=here.id)
    hidden = public_only(here.spec, final=is_frozen())
    return render_template(
        "submissions.html",
        student=student,
        submissions=rows,
        remaining=_remaining(student),
        budget=here.spec.upload_budget,
        hidden=hidden,
        history=history_chart(rows, here.spec, hidden=hidden),
        Status=SubmissionStatus,
        score_text=score_text,
        ranked_text=ranked_text,
        reason_text=reason_text,
        briefs={s.id: progress_brief(queue_position(db(), s), live_parts(s, here.spec))
                for s in rows if SubmissionStatus(s.status).pending},
    )


def history_chart(rows: list[Submission], spec: Assignment, *, hidden: bool) -> ScoreChart | None:
    """The ranked value of each graded upload (``rows`` newest first), oldest first, against
    the ranked part's pass line: the same numbers as the list's "Ranked value" column."""
    part = spec.part(spec.ranked_part)
    values = [(f"#{s.id}", v) for s in reversed(rows)
              if (v := s.rank_value_public if hidden else s.rank_value) is not None]
    if not values or part.threshold <= 0:
        return None
    title = (f"Your {part.label(spec.ranked_metric)} of {part.title} per upload"
             f"{' (public part)' if hidden else ''}")
    return score_chart(title, values, part)


@bp.route("/submissions/<int:submission_id>")
@student_required
def submission(submission_id: int) -> Any:
    student = current_student()
    sub = db().get(Submission, submission_id)
    if sub is None or student is None or sub.student_id != student.id:
        abort(404)
    result = load_result(sub)
    frozen = is_frozen(sub.assignment_id)
    spec = services().lab_of(sub.assignment_id).spec
    live = live_parts(sub, spec)
    return render_template(
        "submission.html",
        sub=sub,
        status=SubmissionStatus(sub.status),
        result=result,
        parts=part_views(result, spec, frozen=frozen) if result else [],
        data_notes=data_notes(result.environment) if result else [],
        spec=spec,
        frozen=frozen,
        progress_sentence=progress_sentence(sub.status, queue_position(db(), sub), live),
        live=live,
        waiting_parts=waiting_parts(spec),
    )


@bp.route("/profile", methods=["GET", "POST"])
@student_required
def profile() -> Any:
    student = current_student()
    assert student is not None
    error = ""
    if request.method == "POST":
        labs = services().labs()  # before this session starts writing
        try:
            set_display_name(db(), student=student, raw=request.form.get("display_name", ""))
            for each in labs:  # the name shows on every board
                bump_board(db(), assignment_id=each.id)
            db().commit()
        except AccountError as exc:
            db().rollback()
            error = str(exc)
        else:
            flash("Your display name is saved; it is what the leaderboard shows.")
            return redirect(url_for("student.upload"))
    return render_template(
        "profile.html", student=student, error=error, first=bool(request.args.get("first"))
    ), 400 if error else 200
