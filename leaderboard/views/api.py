"""The student API for the template's command-line upload (Bearer secret), and live status.

``POST /api/submissions`` takes the zip as a multipart field ``file`` or as the raw body
(``Content-Type: application/zip``) and needs ``Authorization: Bearer <secret>``; reads
also accept the browser's session, which is how the pages poll for status.
"""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request, session, url_for

from leaderboard.accounts import student_by_secret
from leaderboard.app import db, lab, services
from leaderboard.models import Student, Submission
from leaderboard.present import submission_json
from leaderboard.submissions import UploadRefused, remaining_attempts, student_submissions
from leaderboard.views.auth import check_sign_in, current_student, sign_in_failed, sign_in_limits
from leaderboard.views.student import is_frozen, load_result, receive_upload

bp = Blueprint("api", __name__, url_prefix="/api")


def _bearer_student() -> Student | None:
    """The student whose secret the Bearer header carries; a wrong one counts as a failed
    sign-in from this address (the same count as the sign-in page's), 429 when locked."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    limits = sign_in_limits("secret")
    check_sign_in(limits)
    student = None
    if scheme.lower() == "bearer" and token.strip():
        student = student_by_secret(db(), secret=token.strip())
    if student is None:
        sign_in_failed(limits)
    return student


def _api_student(*, allow_session: bool) -> Student:
    if request.headers.get("Authorization"):
        student = _bearer_student()
        if student is None:
            abort(401, "That secret is not known; check the one your instructor gave you.")
        return student
    if allow_session:
        if session.get("role") == "instructor":
            abort(403, "This API is for students.")
        student = current_student()
        if student is not None:
            return student
    abort(401, "Send your secret as 'Authorization: Bearer <secret>'.")


def _error(message: str, status: int, retry_after_s: int = 0) -> Response:
    response = jsonify({"error": message, "status": status})
    response.status_code = status
    if retry_after_s:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


@bp.route("/submissions", methods=["POST"])
def create_submission() -> Response:
    student = _api_student(allow_session=False)
    file = request.files.get("file")
    if file is not None and file.filename:
        stream, filename = file.stream, file.filename
    elif request.mimetype in ("application/zip", "application/octet-stream"):
        stream = request.stream if request.content_length else io.BytesIO(b"")
        filename = request.headers.get("X-Filename", "submission.zip")
    else:
        return _error("Send the zip as the multipart field 'file' or as application/zip.", 400)
    try:
        sub = receive_upload(student, stream, filename)
    except UploadRefused as exc:
        return _error(exc.message, exc.http_status, exc.retry_after_s)
    body = submission_json(sub, None, lab().spec, frozen=is_frozen())
    body["remaining_attempts"] = _remaining(student)
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = url_for("api.get_submission", submission_id=sub.id)
    return response


def _remaining(student: Student) -> int:
    here = lab()
    return remaining_attempts(
        db(), student_id=student.id or 0, assignment_id=here.id, budget=here.spec.upload_budget
    )


@bp.route("/submissions", methods=["GET"])
def list_submissions() -> Response:
    student = _api_student(allow_session=True)
    here = lab()
    rows = student_submissions(db(), student_id=student.id, assignment_id=here.id)
    frozen = is_frozen()
    spec = here.spec
    return jsonify(
        {
            "remaining_attempts": _remaining(student),
            "submissions": [submission_json(s, None, spec, frozen=frozen) for s in rows],
        }
    )


@bp.route("/submissions/<int:submission_id>", methods=["GET"])
def get_submission(submission_id: int) -> Any:
    student = _api_student(allow_session=True)
    sub = db().get(Submission, submission_id)
    if sub is None or sub.student_id != student.id:
        abort(404, "No submission of yours has that id.")
    spec = services().lab_of(sub.assignment_id).spec
    return jsonify(submission_json(sub, load_result(sub), spec, frozen=is_frozen(sub.assignment_id)))
