"""The ``curl`` commands the pages show (the API page, the upload page), spelled in one place.

Each is a whole shell command (lines joined with `` \\``), run as shown by
tests/leaderboard/test_api_docs.py against a live server with a real-size zip. The secret comes
from ``$GRADER_SECRET``, the variable the kit's ``check.py --upload`` reads too.
"""

from __future__ import annotations

from dataclasses import dataclass

SECRET_VAR = "GRADER_SECRET"
EXAMPLE_ID = 42  # "the id of your upload" in the status command


@dataclass(frozen=True)
class Example:
    key: str
    title: str
    command: str


def _join(*parts: str) -> str:
    return " \\\n  ".join(parts)


def curl_examples(base_url: str) -> list[Example]:
    """The documented commands against the service at ``base_url`` (ending in ``/``)."""
    auth = f'-H "Authorization: Bearer ${SECRET_VAR}"'
    upload = f"{base_url}api/submissions"
    return [
        Example("multipart", "Upload as a form (multipart/form-data, field file)",
                _join(f"curl --fail-with-body {auth}", "-F file=@submission.zip", upload)),
        Example("raw", "Upload the zip as the request body (application/zip)",
                _join(f"curl --fail-with-body {auth}", '-H "Content-Type: application/zip"',
                      '-H "X-Filename: submission.zip"', "--data-binary @submission.zip", upload)),
        Example("list", "Your uploads and attempts left", _join(f"curl --fail-with-body {auth}", upload)),
        Example("status", f"One upload and its result ({EXAMPLE_ID}: its id)",
                _join(f"curl --fail-with-body {auth}", f"{upload}/{EXAMPLE_ID}")),
        Example("board", "The leaderboard (no secret needed)",
                f"curl --fail-with-body {base_url}api/leaderboard"),
    ]


def curl_example(base_url: str, key: str) -> Example:
    """One of ``curl_examples`` by its key."""
    return next(e for e in curl_examples(base_url) if e.key == key)
