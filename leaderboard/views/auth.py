"""Sign-in for students (roster secret) and instructors (password); role checks."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.exceptions import TooManyRequests

from leaderboard.accounts import authenticate_instructor, student_by_secret
from leaderboard.context import db, services
from leaderboard.models import Instructor, Student, utcnow
from leaderboard.throttle import (
    Limit,
    account_key,
    address_key,
    forget,
    record_failure,
    retry_message,
    wait_s,
)

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


class SignInThrottled(TooManyRequests):
    """Too many failed sign-ins on this account or from this address (429, with Retry-After)."""


def _seconds(retry_after: object) -> int:
    """Retry-After in seconds (werkzeug also allows a date, which sign-in throttling never sets)."""
    return retry_after if isinstance(retry_after, int) else 0


def sign_in_limits(kind: str, account: str = "") -> list[Limit]:
    """What a failed sign-in counts against: the client address for this kind of sign-in, and
    the account when the attempt names one (an instructor's username; a student's secret names
    no account until it matches)."""
    settings = services().settings
    limits = [Limit(address_key(kind, request.remote_addr or ""), settings.signin_address_failures)]
    if account:
        limits.append(Limit(account_key(kind, account), settings.signin_account_failures))
    return limits


def check_sign_in(limits: list[Limit]) -> None:
    """Refuse (429) while any of ``limits`` is locked, before the credentials are looked at."""
    now = utcnow()
    wait = wait_s(db(), limits=limits, window_s=services().settings.signin_window_s, now=now)
    if wait:
        raise SignInThrottled(retry_message(wait, now), retry_after=wait)


def sign_in_failed(limits: list[Limit]) -> None:
    """Count a failed sign-in; refuse (429) at once if that locked a key."""
    now = utcnow()
    wait = record_failure(db(), limits=limits, window_s=services().settings.signin_window_s, now=now)
    db().commit()
    if wait:
        raise SignInThrottled(retry_message(wait, now), retry_after=wait)


def _form_page(template: str, error: str, status: int, retry_after_s: int = 0) -> Response:
    response = Response(render_template(template, error=error), status=status)
    if retry_after_s:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    """Students sign in with the secret their instructor handed out."""
    if request.method == "GET":
        return _form_page("login.html", "", 200)
    limits = sign_in_limits("secret")
    try:
        check_sign_in(limits)
        student = student_by_secret(db(), secret=request.form.get("secret", ""))
        if student is None:
            sign_in_failed(limits)
            return _form_page("login.html", "That secret is not known. Check it, or ask your "
                              "instructor for yours.", 401)
    except SignInThrottled as exc:
        return _form_page("login.html", str(exc.description), 429, _seconds(exc.retry_after))
    _start_session("student", student.id or 0)
    if not student.display_name:
        return redirect(url_for("student.profile", first=1))
    return redirect(safe_next(request.args.get("next"), url_for("student.upload")))


@bp.route("/staff/login", methods=["GET", "POST"])
def staff_login() -> Any:
    if request.method == "GET":
        return _form_page("staff/login.html", "", 200)
    username = request.form.get("username", "")
    limits = sign_in_limits("staff", username)
    try:
        check_sign_in(limits)
        user = authenticate_instructor(db(), username=username, password=request.form.get("password", ""))
        if user is None:
            sign_in_failed(limits)
            return _form_page("staff/login.html", "Wrong username or password.", 401)
    except SignInThrottled as exc:
        return _form_page("staff/login.html", str(exc.description), 429, _seconds(exc.retry_after))
    forget(db(), key=account_key("staff", username))  # the account's count; the address's stays
    db().commit()
    _start_session("instructor", user.id or 0)
    return redirect(safe_next(request.args.get("next"), url_for("staff.index")))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    session.clear()
    flash("You are signed out.")
    return redirect(url_for("board.leaderboard"))
