"""Instructor pages: health and charts, all submissions, students with flags, regrades, freeze
(after a confirm step), grade exports (CSV, Gradescope)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_
from sqlmodel import col, select

from grader.datasets.provenance import data_notes
from grader.result import GradeResult
from leaderboard.claims import request_regrade
from leaderboard.context import db, lab, services
from leaderboard.gradebook import gradebook_csv as gradebook
from leaderboard.models import AssignmentRow, Result, Student, Submission, SubmissionStatus, utcnow
from leaderboard.present import STATUS_LABELS, part_views, status_label
from leaderboard.ranking import freeze_board, pending_before
from leaderboard.reports import (
    UPLOAD_RULE,
    best_scores,
    grades_csv,
    gradescope_zip,
    health,
    regrades,
    result_flags,
    student_activity,
    upload_median,
    uploads_per_day,
)
from leaderboard.staff_charts import per_day, score_histogram
from leaderboard.views.auth import current_instructor, instructor_required

log = logging.getLogger(__name__)

bp = Blueprint("staff", __name__, url_prefix="/staff")
bp.add_app_template_filter(status_label, "status_label")
PAGE = 100
FAILED = ("timed_out", "out_of_memory", "crashed", "grader_fault")


def _assignment() -> AssignmentRow:
    row = db().get(AssignmentRow, lab().id)
    assert row is not None
    return row


def _queue_length() -> int | None:
    try:
        return services().queue.pending_count()
    except Exception:  # the health page must render even when the queue is down
        log.exception("queue length unavailable")
        return None


@bp.route("/")
@instructor_required
def index() -> Any:
    svc = services()
    assignment = _assignment()
    spec = lab().spec
    return render_template(
        "staff/index.html",
        health=health(db(), settings=svc.settings, queue_length=_queue_length()),
        assignment=assignment,
        spec=spec,
        pending=pending_before(db(), assignment_id=assignment.id or 0, cutoff=utcnow()),
        regradable=_regradable(),
        queue_backend="Redis" if svc.settings.queue_url.startswith("redis") else "SQLite",
        histogram=score_histogram(best_scores(db(), assignment_id=lab().id), spec.max_score),
        activity_chart=per_day(uploads_per_day(db(), assignment_id=lab().id)),
    )


@bp.route("/health.json")
@instructor_required
def health_json() -> Any:
    h = health(db(), settings=services().settings, queue_length=_queue_length())
    return {
        "counts": h.counts,
        "oldest_queued_s": h.oldest_queued_s,
        "queue_length": h.queue_length,
        "running": [{"id": i, "worker": w, "heartbeat_age_s": a, "runs": r} for i, w, a, r in h.running],
        "workers": [
            {"name": n, "seen_s_ago": s, "graded": g, "current": c, "alive": alive}
            for n, s, g, c, alive in h.workers
        ],
    }


@bp.route("/submissions")
@instructor_required
def submissions() -> Any:
    query = (
        select(Submission, Student)
        .join(Student, col(Student.id) == col(Submission.student_id))
        .where(Submission.assignment_id == lab().id)
    )
    q = request.args.get("q", "").strip()
    status = request.args.get("status", "")
    since = request.args.get("since", "").strip()
    min_score = request.args.get("min_score", "").strip()
    errors: dict[str, str] = {}  # field -> what is wrong; that filter is left out
    if q:
        like = f"%{q.lower()}%"
        query = query.where(
            or_(
                func.lower(Student.roster_id).like(like),
                func.lower(Student.name).like(like),
                func.lower(Student.display_name).like(like),
            )
        )
    if status in {str(s) for s in SubmissionStatus}:
        query = query.where(Submission.status == status)
    elif status == "failed":
        query = query.where(col(Submission.status).in_(FAILED))
    elif status:
        errors["status"] = "Choose a status from the list."
    if since:
        try:
            query = query.where(Submission.created_at >= datetime.fromisoformat(since + "T00:00:00+00:00"))
        except ValueError:
            errors["since"] = "The date must look like 2026-12-01."
    if min_score:
        try:
            query = query.where(col(Submission.score) >= float(min_score))
        except ValueError:
            errors["min_score"] = "The minimum score must be a number, like 50 or 72.5."
    page = max(1, request.args.get("page", 1, type=int))
    total = db().exec(select(func.count()).select_from(query.subquery())).one()
    rows = (
        db()
        .exec(
            query.order_by(col(Submission.id).desc())
            .offset((page - 1) * PAGE)
            .limit(PAGE)
        )
        .all()
    )
    return render_template(
        "staff/submissions.html",
        rows=rows,
        flags=result_flags(db(), result_ids=[s.result_id for s, _ in rows if s.result_id]),
        total=total,
        page=page,
        pages=max(1, (total + PAGE - 1) // PAGE),
        args=request.args,
        errors=errors,
        statuses=list(STATUS_LABELS),
    )


@bp.route("/submissions/<int:submission_id>")
@instructor_required
def submission(submission_id: int) -> Any:
    sub = db().get(Submission, submission_id)
    if sub is None:
        abort(404)
    student = db().get(Student, sub.student_id)
    history = (
        db()
        .exec(
            select(Result).where(col(Result.submission_id) == sub.id).order_by(col(Result.id).desc())
        )
        .all()
    )
    current = next((r for r in history if r.id == sub.result_id), None)
    result = GradeResult.from_json(current.result_json) if current else None
    return render_template(
        "staff/submission.html",
        sub=sub,
        student=student,
        history=history,
        result=result,
        environment=dict(result.environment) if result else {},
        data_notes=data_notes(result.environment) if result else [],
        parts=part_views(result, services().lab_of(sub.assignment_id).spec, frozen=True, staff=True)
        if result else [],
        status=SubmissionStatus(sub.status),
        archive_present=(services().settings.upload_dir / f"{sub.archive_key}.zip").is_file(),
    )


@bp.route("/submissions/<int:submission_id>/regrade", methods=["POST"])
@instructor_required
def regrade_one(submission_id: int) -> Any:
    taken = request_regrade(db(), submission_ids=[submission_id])
    db().commit()
    for sub_id in taken:
        services().queue.enqueue(sub_id, priority=0)
    sub = db().get(Submission, submission_id)
    if taken:
        flash(f"Submission {submission_id} is queued for regrading.")
    elif sub is not None and sub.status == SubmissionStatus.INVALID:
        flash(f"Submission {submission_id} was refused as invalid and its zip deleted, so it cannot "
              "be regraded; the student can upload again without using an attempt.")
    else:
        flash(f"Submission {submission_id} is still being graded; try again when it is done.")
    return redirect(url_for("staff.submission", submission_id=submission_id))


def _regradable() -> int:
    """How many of this lab's submissions "Regrade every submission" would queue again (the
    finished ones but for invalid uploads, as ``request_regrade`` takes them)."""
    done = [str(s) for s in SubmissionStatus if not s.pending and s is not SubmissionStatus.INVALID]
    return db().exec(
        select(func.count(col(Submission.id))).where(
            Submission.assignment_id == lab().id, col(Submission.status).in_(done)
        )
    ).one()


def _confirmed(word: str) -> bool:
    """The confirm page's button sends ``confirm=<word>``; a bare POST acts on nothing."""
    return request.form.get("confirm", "") == word


@bp.route("/regrade-all", methods=["GET", "POST"])
@instructor_required
def regrade_all() -> Any:
    if request.method == "GET" or not _confirmed("regrade-all"):
        count = _regradable()
        return render_template(
            "staff/confirm.html",
            title="Regrade every submission?",
            consequence=f"{count} submission{'s' if count != 1 else ''} of {lab().spec.title} will be "
                        "graded again, after the fresh uploads in the queue. Each keeps its old result "
                        "beside the new one under Regrades; the board follows the new results.",
            action=url_for("staff.regrade_all"),
            word="regrade-all",
            button=f"Regrade {count} submission{'s' if count != 1 else ''}",
            disabled=count == 0,
        )
    ids = db().exec(select(Submission.id).where(Submission.assignment_id == lab().id)).all()
    taken = request_regrade(db(), submission_ids=[i for i in ids if i is not None])
    db().commit()
    for sub_id in taken:
        services().queue.enqueue(sub_id, priority=0)
    flash(f"{len(taken)} submissions are queued for regrading after fresh uploads.")
    return redirect(url_for("staff.regrade_list"))


@bp.route("/regrades")
@instructor_required
def regrade_list() -> Any:
    return render_template(
        "staff/regrades.html", regrades=regrades(db(), assignment_id=lab().id)
    )


@bp.route("/students")
@instructor_required
def students() -> Any:
    svc = services()
    activity = student_activity(db(), assignment_id=lab().id, settings=svc.settings)
    median = upload_median(activity)
    if request.args.get("flagged"):
        activity = [a for a in activity if a.flags]
    return render_template("staff/students.html", activity=activity, settings=svc.settings,
                           upload_rule=UPLOAD_RULE, median=median)


@bp.route("/freeze", methods=["GET", "POST"])
@instructor_required
def freeze() -> Any:
    assignment = _assignment()
    if assignment.frozen_at is not None:
        flash("The board was already frozen.")
        return redirect(url_for("staff.index"))
    if request.method == "GET" or not _confirmed("freeze"):
        pending = pending_before(db(), assignment_id=assignment.id or 0, cutoff=utcnow())
        left_out = (f"{pending} upload{'s' if pending != 1 else ''} still grading will be left out "
                    "of the final ranking." if pending else "Every upload so far is graded.")
        return render_template(
            "staff/confirm.html",
            title="Freeze the board?",
            consequence=f"{left_out} The final ranking of {lab().spec.title} is stored with its "
                        "bonus points and no longer changes; this cannot be undone.",
            pending=pending,
            action=url_for("staff.freeze"),
            word="freeze",
            button="Freeze the board now",
            disabled=False,
        )
    instructor = current_instructor()
    done = freeze_board(
        db(),
        spec=lab().spec,
        assignment=assignment,
        by=instructor.username if instructor else "?",
    )
    db().commit()
    flash("The board is frozen: the final ranking is stored." if done else "The board was already frozen.")
    return redirect(url_for("staff.index"))


@bp.route("/export.csv")
@instructor_required
def export_csv() -> Response:
    here = lab()
    text = grades_csv(db(), spec=here.spec, assignment_id=here.id)
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{here.name}-grades.csv"'},
    )


@bp.route("/gradebook.csv")
@instructor_required
def gradebook_csv() -> Response:
    """The whole course: one row per student, the points of every assignment and a total."""
    text = gradebook(db(), assignments={each.name: each.id for each in services().labs()})
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="course-gradebook.csv"'},
    )


@bp.route("/gradescope.zip")
@instructor_required
def gradescope_export() -> Response:
    """Gradescope's results.json per student (their best submission), as a zip."""
    here = lab()
    frozen = _assignment().frozen_at is not None
    body, _ = gradescope_zip(db(), spec=here.spec, assignment_id=here.id, final=frozen)
    return Response(
        body,
        mimetype="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{here.name}-gradescope.zip"'},
    )
