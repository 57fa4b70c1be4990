"""Request bodies: how large each may be, and where an uploaded file waits while it arrives.

- The two upload entrances (the upload page for a signed-in student, ``POST /api/submissions``
  with a Bearer secret) take a body of the upload limit plus ``FORM_OVERHEAD_BYTES`` for the
  multipart framing and the form fields around the zip; every other request at most
  ``BODY_BYTES``. A body over the limit is refused (413) before it is read.
- File parts stream to a file in ``<instance>/uploads/.incoming`` (unlinked from the start,
  so nothing is left if the process dies), never to memory or a RAM-backed ``/tmp``.
- Non-file form fields are held in memory, each at most ``FIELD_BYTES``.
"""

from __future__ import annotations

import tempfile
from typing import IO

from flask import Flask, current_app, request, session
from flask import Request as FlaskRequest

from leaderboard.context import upload_limit
from leaderboard.uploads import human_bytes, upload_too_large_message

UPLOAD_ENDPOINTS = frozenset({"student.upload", "api.create_submission"})
FORM_OVERHEAD_BYTES = 64 * 1024  # multipart framing and the CSRF field around the zip
BODY_BYTES = 1 << 20  # any request that is not an upload: sign-in, forms, the API's reads
# One non-file form field. Werkzeug's multipart decoder also checks its read buffer (64 KiB
# chunks plus a partial boundary) against this number, for file parts too: at 64 KiB every
# multipart upload over ~64 KiB was refused, so it must stay well above that.
FIELD_BYTES = 256 * 1024
DRAIN_BYTES = 8 << 20  # read at most this much of a refused body so the client sees the answer


class Request(FlaskRequest):
    """Flask's request, with file parts spooled to the instance's incoming folder."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        folder = current_app.config["INCOMING_DIR"]
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryFile(dir=folder)


def _is_upload() -> bool:
    if request.endpoint == "student.upload":
        return session.get("role") == "student"
    if request.endpoint == "api.create_submission":
        return bool(request.headers.get("Authorization"))
    return False


def _limit_body() -> None:
    """An upload entrance takes a zip's worth; everything else a small body."""
    if request.method in ("POST", "PUT", "PATCH") and _is_upload():
        request.max_content_length = upload_limit() + FORM_OVERHEAD_BYTES


def too_large_message() -> str:
    """Why this request got 413: the upload, another body, or one form field."""
    limit = request.max_content_length or 0
    whole_body = request.content_length is None or request.content_length > limit
    if whole_body and _is_upload():
        return upload_too_large_message(upload_limit())
    if whole_body:
        return f"The request is larger than the limit of {human_bytes(limit)}."
    return f"A form field is larger than the limit of {human_bytes(FIELD_BYTES)}."


def drain() -> None:
    """Read (and drop) what is left of a refused body, up to ``DRAIN_BYTES``: a client that is
    still sending when the server closes the connection may never show the answer."""
    remaining = min(request.content_length or 0, DRAIN_BYTES)
    stream = request.environ.get("wsgi.input")
    if stream is None:
        return
    while remaining > 0:
        chunk = stream.read(min(remaining, 1 << 16))
        if not chunk:
            return
        remaining -= len(chunk)


def init_app(app: Flask) -> None:
    """Install the request class and the limits (before any hook reads the form)."""
    app.request_class = Request
    app.config.update(
        MAX_CONTENT_LENGTH=BODY_BYTES,
        MAX_FORM_MEMORY_SIZE=FIELD_BYTES,
        INCOMING_DIR=app.extensions["leaderboard"].settings.upload_dir / ".incoming",
    )
    app.before_request_funcs.setdefault(None, []).insert(0, _limit_body)
