"""CSRF tokens, security headers and the error pages (HTML, or JSON under /api/)."""

from __future__ import annotations

import hmac
import logging
import secrets

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    session,
)
from werkzeug.exceptions import HTTPException

from leaderboard.bodies import too_large_message

log = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
MESSAGES = {
    400: "The request was not understood.",
    401: "Sign in first.",
    403: "You do not have access to this page.",
    404: "There is nothing at this address.",
    405: "That method is not allowed here.",
    413: "The upload is larger than the limit.",
    429: "Too many requests; wait a moment and try again.",
    500: "Something went wrong on our side; the staff have been told.",
}
CSRF_MESSAGE = "The form was stale or came from another site; reload the page and try again."


def csrf_token() -> str:
    """This session's CSRF token (made on first use); forms send it back as ``csrf_token``."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def _machine_path() -> bool:
    """The API and the workers' internal routes, also under an assignment's ``/a/<name>/``."""
    return request.path.startswith(("/api/", "/internal/")) or request.blueprint in ("api", "internal")


def _check_csrf() -> None:
    if request.method not in UNSAFE_METHODS or _machine_path():
        return  # these take no cookies for writes: a Bearer secret or job token is required there
    expected = session.get("csrf", "")
    if not expected:  # no session: refused before the body is read
        abort(400, CSRF_MESSAGE)
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token", "")
    if not sent or not hmac.compare_digest(expected, sent):
        abort(400, CSRF_MESSAGE)


def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if "role" in session and "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = "no-store"
    return response


def wants_json() -> bool:
    return _machine_path() or request.path.endswith(".json")


def error_response(exc: HTTPException) -> tuple[Response, int]:
    """The error page (or JSON under /api/) for an HTTP error, with its human message."""
    code = exc.code or 500
    custom = exc.description and exc.description != type(exc).description
    message = exc.description if custom else MESSAGES.get(code, exc.description or "")
    if code == 413 and not custom:
        message = too_large_message()
    if wants_json():
        response = jsonify({"error": message, "status": code})
        if isinstance(exc.response, Response):
            response.headers.update(exc.response.headers)
    else:
        response = Response(render_template("error.html", code=code, message=message))
    retry_after = getattr(exc, "retry_after", None)  # 429 and 503 say when to come back
    if isinstance(retry_after, int) and retry_after > 0:
        response.headers["Retry-After"] = str(retry_after)
    return response, code


def init_app(app: Flask) -> None:
    app.before_request(_check_csrf)
    app.after_request(_headers)
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.register_error_handler(HTTPException, error_response)

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> tuple[Response | str, int]:
        if isinstance(exc, HTTPException):
            return error_response(exc)
        log.exception("unhandled error on %s %s", request.method, request.path)
        if wants_json():
            return jsonify({"error": MESSAGES[500], "status": 500}), 500
        return render_template("error.html", code=500, message=MESSAGES[500]), 500
