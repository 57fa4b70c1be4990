"""Where a worker finds the archive it grades: the shared upload folder, or the web app; and
how the archive of a refused upload is deleted.

On one machine (or with the upload folder on shared storage) the worker reads
``<instance>/uploads/<key>.zip``. A worker machine without that folder sets
``LEADERBOARD_ARCHIVE_URL`` to the web app's address and downloads the archive with its
job's claim token (see ``leaderboard/views/internal.py``). Either way the bytes are
checked against the SHA-256 taken at upload before anything grades them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from grader.errors import GraderFault
from grader.intake import sha256_file
from grader.sandbox.base import temp_prefix
from leaderboard.claims import Claim
from leaderboard.settings import WebSettings

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRY_WAITS_S = (1.0, 2.0, 4.0)  # a web app that restarts is back within these


@contextlib.contextmanager
def archive_for(claim: Claim, settings: WebSettings, *, max_bytes: int) -> Iterator[Path]:
    """The archive of ``claim`` as a local file, verified; a download is removed afterwards."""
    local = settings.upload_dir / f"{claim.archive_key}.zip"
    if not settings.archive_url:
        if not local.is_file():
            raise GraderFault(
                "The uploaded file is missing on the grading machine.",
                detail=f"no archive at {local} (set LEADERBOARD_ARCHIVE_URL on machines "
                "without the upload folder)",
            )
        _check_digest(local, claim)
        yield local
        return
    fd, name = tempfile.mkstemp(prefix=f"{temp_prefix('archive')}{claim.submission_id}-", suffix=".zip",
                                dir=settings.grader.sandbox.work_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            _download(claim, settings.archive_url, out, max_bytes=max_bytes)
        _check_digest(path, claim)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _download(claim: Claim, base_url: str, out: BinaryIO, *, max_bytes: int) -> None:
    url = f"{base_url.rstrip('/')}/internal/archives/{claim.submission_id}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {claim.token}"})
    for attempt, wait_s in enumerate((*RETRY_WAITS_S, None)):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                out.seek(0)
                out.truncate()
                size = 0
                while chunk := response.read(CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise GraderFault(
                            "The uploaded file could not be fetched by the grading machine.",
                            detail=f"{url} sent more than {max_bytes} bytes",
                        )
                    out.write(chunk)
                out.flush()
                return
        except urllib.error.HTTPError as exc:
            if exc.code < 500 or wait_s is None:
                raise GraderFault(
                    "The uploaded file could not be fetched by the grading machine.",
                    detail=f"GET {url}: HTTP {exc.code} (404: this run no longer holds the job)",
                ) from None
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            if wait_s is None:
                raise GraderFault(
                    "The uploaded file could not be fetched by the grading machine.",
                    detail=f"GET {url}: {exc} (after {attempt + 1} tries)",
                ) from None
            problem = str(exc)
        log.warning("submission %s: fetching the archive failed (%s); trying again in %.0f s",
                    claim.submission_id, problem, wait_s)
        time.sleep(wait_s)


def discard_archive(claim: Claim, settings: WebSettings) -> None:
    """Delete the archive of a claimed submission that was refused (an invalid zip): nothing of
    it stays on disk. Called while the claim holds, whose token lets a worker on another machine
    ask the web app to delete it; a failure is logged, never raised (the result still counts)."""
    if not settings.archive_url:
        (settings.upload_dir / f"{claim.archive_key}.zip").unlink(missing_ok=True)
        return
    url = f"{settings.archive_url.rstrip('/')}/internal/archives/{claim.submission_id}"
    request = urllib.request.Request(url, method="DELETE", headers={"Authorization": f"Bearer {claim.token}"})
    try:
        with urllib.request.urlopen(request, timeout=60):
            pass
    except (urllib.error.URLError, OSError) as exc:
        log.warning("submission %s: the refused archive could not be deleted (DELETE %s: %s)",
                    claim.submission_id, url, exc)


def _check_digest(path: Path, claim: Claim) -> None:
    if not claim.archive_sha256:
        return
    digest = sha256_file(path)
    if digest != claim.archive_sha256:
        raise GraderFault(
            "The uploaded file was damaged on its way to the grading machine.",
            detail=f"{path}: SHA-256 {digest} but {claim.archive_sha256} at upload",
        )
