"""Instructor pages about people and files: one student's page, the roster (CSV import,
secret reset and export), and downloads of a submission's zip and logs."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

from flask import Blueprint, Response, abort, render_template, request, send_file
from sqlmodel import col, select

from grader.spreadsheet import safe_cell
from leaderboard import accounts
from leaderboard.context import db, lab, services
from leaderboard.models import Student, Submission
from leaderboard.reports import result_flags, student_activity, student_submissions, submission_log
from leaderboard.staff_charts import score_history
from leaderboard.views.auth import instructor_required

bp = Blueprint("staff_people", __name__, url_prefix="/staff")
ROSTER_MAX_BYTES = 2 << 20  # a roster of thousands of students is a few hundred KiB
UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _student(student_id: int) -> Student:
    student = db().get(Student, student_id)
    if student is None:
        abort(404, "There is no student with this number.")
    return student


def _submission(submission_id: int) -> Submission:
    sub = db().get(Submission, submission_id)
    if sub is None:
        abort(404, "There is no submission with this number.")
    return sub


def attachment_name(*parts: str) -> str:
    """A download's file name from its parts: letters, digits, dot, dash and underscore only
    (a roster id or a student's file name can hold anything)."""
    name = "-".join(UNSAFE_NAME.sub("_", p).strip("._-") for p in parts if p)
    return name[:120] or "download"


@bp.route("/students/<int:student_id>")
@instructor_required
def student(student_id: int) -> Any:
    """All of one student's uploads to this assignment, their points over time, their flags."""
    person = _student(student_id)
    here = lab()
    subs = student_submissions(db(), assignment_id=here.id, student_id=student_id)
    activity = next(
        (a for a in student_activity(db(), assignment_id=here.id, settings=services().settings)
         if a.student.id == student_id),
        None,
    )
    return render_template(
        "staff/student.html",
        student=person,
        subs=list(reversed(subs)),
        activity=activity,
        flags=result_flags(db(), result_ids=[s.result_id for s in subs if s.result_id]),
        chart=score_history([(s.id or 0, s.score) for s in subs], here.spec.max_score),
        spec=here.spec,
    )


@bp.route("/students/<int:student_id>/reset-secret", methods=["POST"])
@instructor_required
def reset_secret(student_id: int) -> Any:
    """A new generation of the student's secret: the old one stops working at once."""
    person = _student(student_id)
    secret = accounts.rotate_secret(db(), student=person, roster_key=services().settings.roster_key)
    db().commit()
    # Shown on this response only, never put in the (client-side) session as a flash would be.
    return render_template("staff/secret.html", student=person, secret=secret)


@bp.route("/submissions/<int:submission_id>/archive.zip")
@instructor_required
def download_archive(submission_id: int) -> Response:
    sub = _submission(submission_id)
    path = services().settings.upload_dir / f"{sub.archive_key}.zip"
    if not path.is_file():
        abort(410, "The zip of this submission is no longer stored (an invalid upload's zip is deleted).")
    owner = db().get(Student, sub.student_id)
    name = attachment_name(owner.roster_id if owner else "", f"submission-{sub.id}") + ".zip"
    return send_file(path, mimetype="application/zip", as_attachment=True, download_name=name,
                     max_age=0)


@bp.route("/submissions/<int:submission_id>/log.txt")
@instructor_required
def download_log(submission_id: int) -> Response:
    sub = _submission(submission_id)
    owner = db().get(Student, sub.student_id)
    text = submission_log(db(), submission=sub, spec=services().lab_of(sub.assignment_id).spec)
    name = attachment_name(owner.roster_id if owner else "", f"submission-{sub.id}", "log") + ".txt"
    return Response(text, mimetype="text/plain",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/roster", methods=["GET", "POST"])
@instructor_required
def roster() -> Any:
    """Import a roster CSV (the columns of ``flask import-roster``); every bad line is listed
    next to the file field and nothing is imported until the file is clean."""
    problems: list[str] = []
    done = ""
    if request.method == "POST":
        upload = request.files.get("roster")
        body = upload.stream.read(ROSTER_MAX_BYTES + 1) if upload and upload.filename else b""
        if not body:
            problems = ["Choose a CSV file with the columns id, name, email (optional display_name)."]
        elif len(body) > ROSTER_MAX_BYTES:
            problems = [f"The file is larger than {ROSTER_MAX_BYTES >> 20} MiB; is it the roster?"]
        else:
            try:
                entries, problems = accounts.check_roster(body.decode("utf-8-sig"))
            except UnicodeDecodeError:
                entries, problems = [], ["The file is not UTF-8 text; save the roster as CSV (UTF-8)."]
            if not problems and not entries:
                problems = ["The file has the columns but no students."]
            if not problems:
                try:
                    added, updated = accounts.import_roster(
                        db(), entries=entries, roster_key=services().settings.roster_key)
                    db().commit()
                    done = (f"{added} students added, {updated} updated. New students sign in with the "
                            "secrets of the export below.")
                except accounts.AccountError as exc:
                    db().rollback()
                    problems = [str(exc)]
    count = len(db().exec(select(col(Student.id))).all())
    return render_template("staff/roster.html", problems=problems, done=done, count=count,
                           columns=accounts.ROSTER_COLUMNS), (400 if problems else 200)


@bp.route("/roster/secrets.csv", methods=["POST"])
@instructor_required
def export_secrets() -> Response:
    """Every student's sign-in secret as CSV (id, name, email, secret) for a mail merge; a POST
    with the form's CSRF token, so no other site can start the download."""
    rows = accounts.export_secrets(db(), roster_key=services().settings.roster_key)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "name", "email", "secret"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: safe_cell(v) for k, v in row.items()})
    response = Response(out.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="student-secrets.csv"'})
    response.headers["Cache-Control"] = "no-store"
    return response

