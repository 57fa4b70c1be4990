"""For staff: how far each student's best upload on the live board does better on the public
part than on the private part (over-fitting to the board), on the students page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leaderboard.db import session_scope
from leaderboard.reports import student_activity
from tests.leaderboard.factories import WEIGHTS, add_graded, result_data
from tests.leaderboard.helpers import Roster, sign_in_staff

T0 = datetime(2026, 11, 10, 12, 0, tzinfo=UTC)


def weighted(values: tuple[float, float, float]) -> float:
    return sum(w * v for w, v in zip(WEIGHTS.values(), values, strict=True))


def test_public_minus_private_of_the_best_public_upload(app: Any, roster: Roster, tmp_path: Path) -> None:
    svc = app.extensions["leaderboard"]
    uploads = {  # student -> (public, private) per upload, in order
        "s001": [((0.70, 0.70, 0.70), (0.69, 0.69, 0.69)), ((0.95, 0.90, 0.80), (0.70, 0.60, 0.50))],
        "s002": [((0.80, 0.80, 0.80), (0.82, 0.82, 0.82))],
    }
    for who, rows in uploads.items():
        for k, (public, private) in enumerate(rows):
            data = result_data(final=public, public=public, private=private)
            add_graded(svc.settings, svc.spec, student_id=roster.ids[who], engine=svc.engine, tmp=tmp_path,
                       at=T0 + timedelta(minutes=k), data=data)
    with session_scope(svc.engine) as session:
        gaps = {a.student.roster_id: a.board_gap
                for a in student_activity(session, assignment_id=svc.assignment_id(), settings=svc.settings)}
    best = {who: max(rows, key=lambda r: weighted(r[0])) for who, rows in uploads.items()}
    for who, (public, private) in best.items():
        assert abs(gaps[who] - (weighted(public) - weighted(private))) < 1e-9, who
    assert gaps["s003"] is None  # no upload

    client = app.test_client()
    sign_in_staff(client)
    html = client.get("/staff/students").get_data(as_text=True)
    shown = dict(re.findall(r'>(s00\d)</a>.*?<td class="num" data-board-gap>([^<]*)</td>', html, flags=re.S))
    assert shown["s001"] == f"{100 * gaps['s001']:+.1f} points"
    assert shown["s002"].startswith("-")
    assert shown["s003"] == ""
