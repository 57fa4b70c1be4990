"""Staff reports: per-student activity with flags, queue health, regrade comparisons, grades CSV."""

from __future__ import annotations

import csv
import io
import json
import statistics
import zipfile
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from grader.config import Assignment
from grader.result import Flag, GradeResult
from grader.spreadsheet import safe_cell
from leaderboard.models import (
    FrozenRow,
    PartResultRow,
    Result,
    Student,
    Submission,
    SubmissionStatus,
    WorkerBeat,
    utcnow,
)
from leaderboard.settings import WebSettings

# The course's words on many uploads, cited where the staff pages flag them.
UPLOAD_RULE = (
    "If we see unreasonably many uploads for one student, the network could be disqualified "
    "as over-fitted to the test data."
)


@dataclass
class StudentActivity:
    student: Student
    uploads: int = 0  # counted attempts
    total: int = 0  # every upload, invalid ones too
    best_public: float | None = None
    best_final: float | None = None
    last_upload: datetime | None = None
    flags: list[str] = field(default_factory=list)
    upload_flag: str = ""  # the many-uploads flag (also in ``flags``), which cites UPLOAD_RULE
    # Over-fitting to the board: public minus private ranked value of the upload with the best
    # public value (the one the live board shows); positive when the board flatters it.
    board_gap: float | None = None


def upload_median(activity: list[StudentActivity]) -> float:
    """The median of counted uploads over the students who uploaded at all (0: nobody did)."""
    counts = [a.uploads for a in activity if a.uploads]
    return float(statistics.median(counts)) if counts else 0.0


TIMES = "\u00d7"  # the multiplication sign


def upload_flag_text(uploads: int, median: float) -> str:
    """The flag's text, e.g. "63 uploads, 4.2x the class median of 15" (with a times sign)."""
    return f"{uploads} uploads, {uploads / median:.1f}{TIMES} the class median of {median:g}"


def student_activity(session: Session, *, assignment_id: int, settings: WebSettings) -> list[StudentActivity]:
    """Every student with upload counts, best values and flags (many uploads, score jumps).

    Many uploads: more than ``flag_upload_count`` counted uploads, shown against the class
    median (of the students who uploaded) and under the course's rule (UPLOAD_RULE).
    """
    out = {s.id: StudentActivity(s) for s in session.exec(select(Student)).all()}
    rows = session.exec(
        select(  # type: ignore[call-overload]  # sqlmodel's select() stubs stop at four columns; any number works
            Submission.student_id,
            Submission.counts_attempt,
            Submission.rank_value_public,
            Submission.rank_value,
            Submission.created_at,
            Submission.id,
        )
        .where(Submission.assignment_id == assignment_id)
        .order_by(Submission.student_id, Submission.created_at, Submission.id)
    ).all()
    previous: dict[int, tuple[float, int]] = {}
    for student_id, counts, public, final, created, sub_id in rows:
        act = out.get(student_id)
        if act is None:
            continue
        act.total += 1
        act.uploads += 1 if counts else 0
        act.last_upload = created
        if public is not None:
            if act.best_public is None or public > act.best_public:
                act.board_gap = public - final if final is not None else None
            act.best_public = public if act.best_public is None else max(act.best_public, public)
            if student_id in previous:
                before, before_id = previous[student_id]
                if public - before > settings.flag_score_jump:
                    act.flags.append(f"score jump {before:.1%} → {public:.1%} (#{before_id} → #{sub_id})")
            previous[student_id] = (public, sub_id)
        if final is not None:
            act.best_final = final if act.best_final is None else max(act.best_final, final)
    median = upload_median(list(out.values()))
    for act in out.values():
        if act.uploads > settings.flag_upload_count:
            act.upload_flag = upload_flag_text(act.uploads, median)
            act.flags.insert(0, act.upload_flag)
    return sorted(out.values(), key=lambda a: (-len(a.flags), -a.uploads, a.student.roster_id))


def result_flags(session: Session, *, result_ids: Iterable[int]) -> dict[int, tuple[Flag, ...]]:
    """The staff flags (see grader.result.Flag) of the flagged ones among these results."""
    ids = sorted({i for i in result_ids if i})
    if not ids:
        return {}
    out: dict[int, tuple[Flag, ...]] = {}
    rows = session.exec(
        select(col(Result.id), col(Result.result_json)).where(col(Result.id).in_(ids))
    ).all()
    for result_id, text in rows:
        flags = json.loads(text).get("flags") or []
        if flags and result_id is not None:
            out[result_id] = tuple(Flag.from_dict(f) for f in flags)
    return out


@dataclass(frozen=True)
class Health:
    counts: dict[str, int]
    oldest_queued_s: float | None
    running: list[tuple[int, str, float, int]]  # id, worker, seconds since heartbeat, runs
    workers: list[tuple[str, float, int, int | None, bool]]  # name, seen s ago, graded, current, alive
    queue_length: int | None


def health(session: Session, *, settings: WebSettings, queue_length: int | None) -> Health:
    now = utcnow()
    counts = dict.fromkeys((str(s) for s in SubmissionStatus), 0)
    for status, n in session.exec(
        select(Submission.status, func.count(col(Submission.id))).group_by(Submission.status)
    ).all():
        counts[status] = int(n)
    oldest = session.exec(
        select(func.min(Submission.created_at)).where(Submission.status == SubmissionStatus.QUEUED)
    ).one()
    running = [
        (
            s.id or 0,
            s.worker,
            (now - s.heartbeat_at).total_seconds() if s.heartbeat_at else -1.0,
            s.grading_attempts,
        )
        for s in session.exec(select(Submission).where(Submission.status == SubmissionStatus.RUNNING)).all()
    ]
    alive_within = timedelta(seconds=max(3 * settings.heartbeat_s, 15))
    workers = [
        (
            w.name,
            (now - w.seen_at).total_seconds(),
            w.graded,
            w.current_submission_id,
            now - w.seen_at < alive_within,
        )
        for w in session.exec(select(WorkerBeat).order_by(col(WorkerBeat.seen_at).desc())).all()
    ]
    return Health(
        counts=counts,
        oldest_queued_s=(now - oldest).total_seconds() if oldest else None,
        running=running,
        workers=workers[:50],
        queue_length=queue_length,
    )


@dataclass(frozen=True)
class Regrade:
    submission: Submission
    roster_id: str
    old: Result | None
    new: Result | None

    @property
    def changed(self) -> bool:
        if self.old is None or self.new is None:
            return False
        return (self.old.status, round(self.old.score, 6)) != (
            self.new.status,
            round(self.new.score, 6),
        )


def regrades(session: Session, *, assignment_id: int, limit: int = 500) -> list[Regrade]:
    """Submissions graded more than once: the previous and the current result side by side."""
    subs = session.exec(
        select(Submission, Student.roster_id)
        .join(Student, col(Student.id) == col(Submission.student_id))
        .where(
            Submission.assignment_id == assignment_id,
            col(Submission.previous_result_id).is_not(None),
        )
        .order_by(col(Submission.id))
        .limit(limit)
    ).all()
    ids = {i for s, _ in subs for i in (s.result_id, s.previous_result_id) if i}
    results = (
        {
            r.id: r
            for r in session.exec(select(Result).where(col(Result.id).in_(ids))).all()
        }
        if ids
        else {}
    )
    return [
        Regrade(s, roster, results.get(s.previous_result_id), results.get(s.result_id)) for s, roster in subs
    ]


def best_submissions(session: Session, *, assignment_id: int) -> dict[int, Submission]:
    """Student id -> their graded submission with the most points (the earliest of equals):
    the one the assignment's grade counts."""
    best: dict[int, Submission] = {}
    for sub in session.exec(
        select(Submission)
        .where(col(Submission.assignment_id) == assignment_id, col(Submission.result_id).is_not(None))
        .order_by(col(Submission.created_at), col(Submission.id))
    ).all():
        current = best.get(sub.student_id)
        if current is None or (sub.score or 0.0) > (current.score or 0.0):
            best[sub.student_id] = sub
    return best


def frozen_rows(session: Session, *, assignment_id: int) -> dict[int, FrozenRow]:
    """Student id -> their row of the frozen final ranking (rank and bonus points)."""
    return {
        f.student_id: f
        for f in session.exec(select(FrozenRow).where(FrozenRow.assignment_id == assignment_id))
    }


def grades_csv(session: Session, *, spec: Assignment, assignment_id: int) -> str:
    """One row per student: their best graded submission's points per part, bonus, final rank."""
    part_names = [p.name for p in spec.parts]
    best = best_submissions(session, assignment_id=assignment_id)
    result_ids = [s.result_id for s in best.values()]
    parts: dict[int, dict[str, PartResultRow]] = defaultdict(dict)
    if result_ids:
        for row in session.exec(
            select(PartResultRow).where(col(PartResultRow.result_id).in_(result_ids))
        ).all():
            parts[row.result_id][row.name] = row
    frozen = frozen_rows(session, assignment_id=assignment_id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["id", "name", "email", "display_name", "submission_id", "submitted_at"]
        + [f"{n}_points" for n in part_names]
        + [f"{n}_passed" for n in part_names]
        + ["total", "max_total", "passed", spec.rank_by, "bonus", "final_rank"]
    )
    for student in session.exec(select(Student).order_by(Student.roster_id)).all():
        chosen = best.get(student.id or 0)
        row_parts = parts.get(chosen.result_id or 0, {}) if chosen else {}
        fr = frozen.get(student.id or 0)
        final_metrics = json.loads(chosen.board_json).get("final", {}) if chosen and chosen.board_json else {}
        metric = spec.ranked_metric
        writer.writerow(
            [safe_cell(v) for v in (student.roster_id, student.name, student.email, student.display_name)]
            + ([str(chosen.id), chosen.created_at.isoformat()] if chosen else ["", ""])
            + [f"{row_parts[n].score:g}" if n in row_parts else "" for n in part_names]
            + [("yes" if row_parts[n].passed else "no") if n in row_parts else "" for n in part_names]
            + [
                f"{chosen.score:g}" if chosen and chosen.score is not None else "",
                f"{spec.max_score:g}",
                "yes" if row_parts and all(p.passed for p in row_parts.values()) else "no",
                f"{final_metrics[metric]:.6f}" if metric in final_metrics else "",
                str(fr.bonus) if fr else "0",
                str(fr.rank) if fr else "",
            ]
        )
    return out.getvalue()


# --------------------------------------------------------------------------- per student, class charts


def student_submissions(session: Session, *, assignment_id: int, student_id: int) -> list[Submission]:
    """Every upload of one student to one assignment, oldest first."""
    return list(
        session.exec(
            select(Submission)
            .where(Submission.assignment_id == assignment_id, Submission.student_id == student_id)
            .order_by(col(Submission.created_at), col(Submission.id))
        ).all()
    )


def best_scores(session: Session, *, assignment_id: int) -> list[float]:
    """Each student's best points (the submission the grade counts), one value per student who
    has a graded submission."""
    return [s.score or 0.0 for s in best_submissions(session, assignment_id=assignment_id).values()]


def uploads_per_day(session: Session, *, assignment_id: int) -> list[tuple[date, int]]:
    """Uploads per UTC day from the first upload's day to the last's (days without any are 0)."""
    stamps = session.exec(
        select(Submission.created_at).where(Submission.assignment_id == assignment_id)
    ).all()
    counts: dict[date, int] = defaultdict(int)
    for stamp in stamps:
        counts[stamp.date()] += 1
    if not counts:
        return []
    day, last = min(counts), max(counts)
    out = []
    while day <= last:
        out.append((day, counts.get(day, 0)))
        day += timedelta(days=1)
    return out


def submission_log(session: Session, *, submission: Submission, spec: Assignment) -> str:
    """Everything recorded about one submission's gradings as plain text, newest first: status,
    messages, and the staff-only details of the run and of each part."""
    lines = [
        f"submission {submission.id} of {spec.name}: {submission.filename} "
        f"({submission.size_bytes} bytes, SHA-256 {submission.archive_sha256})",
        f"uploaded {submission.created_at.isoformat()}, status {submission.status}, "
        f"grading runs {submission.grading_attempts}, worker {submission.worker or '-'}",
        "",
    ]
    results = session.exec(
        select(Result).where(Result.submission_id == submission.id).order_by(col(Result.id).desc())
    ).all()
    if not results:
        lines.append("No grading recorded yet.")
    for row in results:
        data = json.loads(row.result_json)
        lines += [
            f"=== result {row.id} at {row.created_at.isoformat()}{' (regrade)' if row.regrade else ''}: "
            f"{row.status}, {row.score:g}/{row.max_score:g} points, {row.runtime_s:.1f} s, "
            f"worker {row.worker or '-'}",
            row.message,
        ]
        if data.get("detail"):
            lines += ["--- detail", data["detail"]]
        for part in data.get("parts") or []:
            lines.append(f"--- part {part.get('name')}: {part.get('status')}, "
                         f"{part.get('score', 0):g}/{part.get('max_score', 0):g}, {part.get('message', '')}")
            if part.get("detail"):
                lines.append(part["detail"])
        for flag in data.get("flags") or []:
            lines.append(f"--- flag {flag.get('part')}: {flag.get('reason')}")
        lines.append("")
    return "\n".join(lines) + "\n"


def gradescope_zip(
    session: Session, *, spec: Assignment, assignment_id: int, final: bool
) -> tuple[bytes, int]:
    """A zip of Gradescope ``results.json`` files, one per student (``<roster id>.json``, their
    best submission, what the student may see); and how many files it holds."""
    from grader.export import gradescope, safe_filename  # the grader's own export format

    best = best_submissions(session, assignment_id=assignment_id)
    results = {
        r.id: r for r in session.exec(
            select(Result).where(col(Result.id).in_([s.result_id for s in best.values()]))
        ).all()
    } if best else {}
    students = {
        s.id: s for s in session.exec(select(Student).where(col(Student.id).in_(list(best)))).all()
    } if best else {}
    out = io.BytesIO()
    taken: set[str] = set()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for student_id, sub in sorted(best.items(), key=lambda kv: students[kv[0]].roster_id):
            row = results.get(sub.result_id)
            if row is None:
                continue
            data = gradescope(GradeResult.from_json(row.result_json), spec, final=final)
            name = safe_filename(students[student_id].roster_id, taken)
            archive.writestr(f"{name}.json", json.dumps(data, indent=2) + "\n")
    return out.getvalue(), len(taken)
