"""Health checks of the images (HEALTHCHECK in app.Dockerfile, healthcheck in compose.yaml).

    python3 healthcheck.py web      # the app answers GET /api/leaderboard with 200
    python3 healthcheck.py worker   # this container's worker beat in the database lately

Exit 0 when healthy, 1 with the reason on stderr otherwise.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from datetime import UTC, datetime, timedelta


def web() -> str:
    port = os.environ.get("PORT", "8000")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/leaderboard", timeout=4) as response:
        return "" if response.status == 200 else f"GET /api/leaderboard answered {response.status}"


def worker() -> str:
    # The worker process beats every LEADERBOARD_HEARTBEAT_S (5 s) as `<hostname>:<pid>`.
    from sqlmodel import Session, select

    from leaderboard.db import make_engine
    from leaderboard.models import WorkerBeat
    from leaderboard.settings import WebSettings

    settings = WebSettings.from_env()
    window = timedelta(seconds=max(30.0, 3 * settings.heartbeat_s))
    engine = make_engine(settings.db_url)
    try:
        with Session(engine) as session:
            beats = session.exec(
                select(WorkerBeat).where(WorkerBeat.name.startswith(socket.gethostname() + ":"))  # type: ignore[attr-defined]
            ).all()
    finally:
        engine.dispose()
    now = datetime.now(UTC)
    fresh = [b for b in beats if now - b.seen_at.replace(tzinfo=b.seen_at.tzinfo or UTC) < window]
    return "" if fresh else f"no heartbeat of a worker on {socket.gethostname()} in the last {window}"


def main() -> int:
    checks = {"web": web, "worker": worker}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        problem = checks[sys.argv[1]]()
    except Exception as exc:  # any failure to ask is unhealthy; say what it was
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
