"""Sign-in for students (roster secret) and instructors (password); role checks."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from leaderboard.accounts import authenticate_instructor, student_by_secret
from leaderboard.app import db
from leaderboard.models import Instructor, Student

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])


def current_student() -> Student | None:
    if session.get("role") != "student":
        return None
    if "student" not in g:
        g.student = db().get(Student, session.get("uid"))
    return g.student


def current_instructor() -> Instructor | None:
    if session.get("role") != "instructor":
        return None
    if "instructor" not in g:
        g.instructor = db().get(Instructor, session.get("uid"))
    return g.instructor


MAX_NEXT_CHARS = 2000


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site, else ``default``: the one rule against open
    redirects, for every ``next`` the app reads.

    A path starts with one "/" that no "/" or "\\" follows, holds no backslash, whitespace,
    control or invisible character, and parses with no scheme or host; all of this also after
    one round of percent-decoding. Browsers drop tabs and newlines from a URL, so
    ``/%09/evil.example`` would take them to //evil.example.
    """
    if not target or len(target) > MAX_NEXT_CHARS:
        return default
    for text in (target, unquote(target)):
        if not text.startswith("/") or text[1:2] in ("/", "\\") or "\\" in text:
            return default
        if any(ch.isspace() or unicodedata.category(ch)[0] == "C" for ch in text):
            return default
        parts = urlsplit(text)
        if parts.scheme or parts.netloc:
            return default
    return target


def student_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if session.get("role") == "instructor":
            abort(403, "This page is for students; instructors use the staff pages.")
        if current_student() is None:
            session.pop("role", None)
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def instructor_required(view: F) -> F:
    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if session.get("role") == "student":
            abort(403, "This page is for instructors only.")
        if current_instructor() is None:
            session.pop("role", None)
            return redirect(url_for("auth.staff_login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return cast(F, wrapped)


def _start_session(role: str, uid: int) -> None:
    csrf = session.get("csrf")
    session.clear()  # a fresh session on sign-in (no fixation)
    session["role"], session["uid"] = role, uid
    if csrf:
        session["csrf"] = csrf


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Students sign in with the secret their instructor handed out."""
    error = ""
    if request.method == "POST":
        student = student_by_secret(db(), secret=request.form.get("secret", ""))
        if student is None:
            error = "That secret is not known. Check it, or ask your instructor for yours."
        else:
            _start_session("student", student.id or 0)
            if not student.display_name:
                return redirect(url_for("student.profile", first=1))
            return redirect(safe_next(request.args.get("next"), url_for("student.upload")))
    return render_template("login.html", error=error), 401 if error else 200


@bp.route("/staff/login", methods=["GET", "POST"])
def staff_login() -> Any:
    error = ""
    if request.method == "POST":
        user = authenticate_instructor(
            db(),
            username=request.form.get("username", ""),
            password=request.form.get("password", ""),
        )
        if user is None:
            error = "Wrong username or password."
        else:
            _start_session("instructor", user.id or 0)
            return redirect(safe_next(request.args.get("next"), url_for("staff.index")))
    return render_template("staff/login.html", error=error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("board.leaderboard"))
