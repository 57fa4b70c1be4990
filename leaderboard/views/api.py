"""The student API for the template's command-line upload (Bearer secret), and live status.

``POST /api/submissions`` takes the zip as a multipart field ``file`` or as the raw body
(``Content-Type: application/zip``) and needs ``Authorization: Bearer <secret>``; reads
also accept the browser's session, which is how the pages poll for status. Each view's
``@operation`` is its part of the OpenAPI document served at ``/api/openapi.json`` (built by
``leaderboard.openapi``) and explained, with curl examples, at ``/api/docs``.
"""

from __future__ import annotations

import io
import json
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    session,
    url_for,
)

from leaderboard.accounts import student_by_secret
from leaderboard.apidocs import SECRET_VAR, Example, curl_example, curl_examples
from leaderboard.context import db, is_frozen, lab, load_result, services, upload_limit
from leaderboard.live import live_json
from leaderboard.models import Student, Submission
from leaderboard.openapi import SCHEMAS, Answer, document, operation, refusal
from leaderboard.present import submission_json
from leaderboard.uploads import (
    UploadRefused,
    human_bytes,
    receive_upload,
    remaining_attempts,
    student_submissions,
)
from leaderboard.views.auth import check_sign_in, current_student, sign_in_failed, sign_in_limits

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.app_context_processor
def _examples() -> dict[str, Any]:
    """``curl_example(key)`` for any page (the upload page shows the multipart one)."""

    def example(key: str) -> Example:
        # The lab's own address: /a/<name>/api/... on another lab's pages.
        upload = url_for("api.create_submission", _external=True)
        return curl_example(upload.removesuffix("api/submissions"), key)

    return {"curl_example": example}


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


ZIP_BODY = {"type": "string", "contentMediaType": "application/zip"}
NO_SECRET = refusal("No secret, or one that is not known.")
LOCKED = refusal("Too many wrong secrets from this address; wait and try again.",
                 {"Retry-After": "Seconds to wait."})


@bp.route("/submissions", methods=["POST"])
@operation(
    "Upload a submission zip",
    auth="secret",
    description="Send the zip as the multipart field `file`, or as the whole body with "
                "`Content-Type: application/zip` (then `X-Filename` names it). The answer is the new "
                "submission, queued for grading; poll its `Location` until `pending` is false. The zip's "
                "structure is checked first: one grading would refuse is refused at once (422).",
    body={
        "multipart/form-data": {"type": "object", "required": ["file"],
                                "properties": {"file": {**ZIP_BODY, "description": "The submission zip."}}},
        "application/zip": ZIP_BODY,
        "application/octet-stream": ZIP_BODY,
    },
    header_params={"X-Filename": "The file name to record for a raw-body upload (default submission.zip)."},
    answers={
        202: Answer("Taken and queued for grading.", "Submission",
                    headers={"Location": "The API address of the new submission."}),
        400: refusal("No file in the request, or an empty one."),
        401: NO_SECRET,
        403: refusal("Uploads are closed (not open yet, past the deadline, or the board is frozen)."),
        413: refusal("The zip is larger than the upload limit."),
        422: refusal("Not a zip the grader can take: not a zip at all, files inside a folder instead "
                     "of at the zip's top level, a required file missing, or an unsafe entry; "
                     "`error` says which. Nothing is queued and no attempt is used."),
        429: refusal("No attempts left, too many uploads in a short time, or too many wrong secrets.",
                     {"Retry-After": "Seconds to wait."}),
    },
)
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
        sub = receive_upload(db(), services(), lab(), student_id=student.id or 0, stream=stream,
                             filename=filename, max_bytes=upload_limit())
    except UploadRefused as exc:
        return _error(exc.message, exc.http_status, exc.retry_after_s)
    spec = lab().spec
    body = submission_json(sub, None, spec, frozen=is_frozen(), progress=live_json(db(), sub, spec))
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
@operation(
    "Your uploads, newest first, and the attempts you have left",
    auth="secret_or_session",
    answers={200: Answer("Your uploads.", "SubmissionList"), 401: NO_SECRET, 403: refusal(
        "Signed in as an instructor: this API is for students."), 429: LOCKED},
)
def list_submissions() -> Response:
    student = _api_student(allow_session=True)
    here = lab()
    rows = student_submissions(db(), student_id=student.id, assignment_id=here.id)
    frozen = is_frozen()
    spec = here.spec
    return jsonify(
        {
            "remaining_attempts": _remaining(student),
            "submissions": [submission_json(s, None, spec, frozen=frozen, progress=live_json(db(), s, spec))
                            for s in rows],
        }
    )


@bp.route("/submissions/<int:submission_id>", methods=["GET"])
@operation(
    "One upload: its status and, once graded, what you may see of its result",
    auth="secret_or_session",
    path_params={"submission_id": "The `id` from the upload's answer or the list."},
    answers={200: Answer("The upload.", "Submission"), 401: NO_SECRET,
             403: refusal("Signed in as an instructor: this API is for students."),
             404: refusal("No submission of yours has that id."), 429: LOCKED},
)
def get_submission(submission_id: int) -> Any:
    student = _api_student(allow_session=True)
    sub = db().get(Submission, submission_id)
    if sub is None or sub.student_id != student.id:
        abort(404, "No submission of yours has that id.")
    spec = services().lab_of(sub.assignment_id).spec
    return jsonify(submission_json(sub, load_result(sub), spec, frozen=is_frozen(sub.assignment_id),
                                   progress=live_json(db(), sub, spec)))


@bp.route("/openapi.json")
@operation(
    "This API as an OpenAPI 3.1 document",
    tag="documentation",
    answers={200: Answer("The document.", "", media_type="application/json")},
)
def openapi_json() -> Response:
    doc = document(current_app, server_url=request.script_root + "/")
    return Response(json.dumps(doc, indent=1), mimetype="application/json")  # in the document's order


@bp.route("/docs")
@operation(
    "This API explained, with curl examples",
    tag="documentation",
    answers={200: Answer("The page.", "", media_type="text/html")},
)
def docs() -> str:
    doc = document(current_app, server_url=request.script_root + "/")
    routes = [(method.upper(), path, op) for path, item in doc["paths"].items()
              for method, op in item.items()]
    return render_template(
        "api_docs.html",
        routes=routes,
        examples=curl_examples(request.url_root),
        secret_var=SECRET_VAR,
        error_example=SCHEMAS["Error"],
        upload_limit=human_bytes(current_app.config["MAX_UPLOAD_BYTES"]),
    )
