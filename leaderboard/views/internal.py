"""What grading machines fetch from the web app: the archive of the job they hold.

A worker on another machine has no access to the upload folder. When it claims a
submission it gets the claim token (random, 128 bits, kept in the database only while
that run holds the submission) and sends it as ``Authorization: Bearer <token>`` to
``GET /internal/archives/<id>``. The token is the job's own: it opens that one archive,
only while that run is the one grading it; any other request gets the same 404. With the
same token, ``DELETE`` removes the archive of an upload the run found invalid.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, request, send_file

from leaderboard.context import db, services
from leaderboard.models import Submission, SubmissionStatus

bp = Blueprint("internal", __name__, url_prefix="/internal")

NOT_YOURS = "No such job."


def _held(submission_id: int) -> Submission:
    """The submission, if the request carries the token of the run now grading it; else 404."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    sub = db().get(Submission, submission_id)
    if (
        scheme.lower() != "bearer"
        or sub is None
        or sub.status != SubmissionStatus.RUNNING
        or not sub.claim_token
        or not hmac.compare_digest(sub.claim_token.encode(), token.strip().encode())
    ):
        abort(404, NOT_YOURS)
    return sub


@bp.route("/archives/<int:submission_id>")
def archive(submission_id: int) -> Response:
    sub = _held(submission_id)
    path = services().settings.upload_dir / f"{sub.archive_key}.zip"
    if not path.is_file():
        abort(410, "The archive of this submission is missing on the web server.")
    response = send_file(path, mimetype="application/zip", max_age=0, conditional=False, etag=False)
    response.headers["X-Archive-SHA256"] = sub.archive_sha256
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/archives/<int:submission_id>", methods=["DELETE"])
def delete_archive(submission_id: int) -> Response:
    """The run found the upload invalid: its archive is deleted before the result is recorded."""
    sub = _held(submission_id)
    (services().settings.upload_dir / f"{sub.archive_key}.zip").unlink(missing_ok=True)
    return Response(status=204)
