"""A result above the plausibility ceiling, graded for real, recorded through the worker's
path: staff see the flag and its reason; the student's pages and API do not. Both pages say
what the hidden data is (private, public or synthetic)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tests.leaderboard.factories import add_graded
from tests.leaderboard.helpers import Roster, sign_in, sign_in_staff


def _record(app: Any, roster: Roster, who: str, data: dict[str, Any], tmp_path: Path) -> int:
    svc = app.extensions["leaderboard"]
    return add_graded(svc.settings, svc.spec, student_id=roster.ids[who], data=data,
                      engine=svc.engine, tmp=tmp_path)


def test_a_flagged_result_is_shown_to_staff_only(
    app: Any, client: Any, roster: Roster, tmp_path: Path, flagged: Any
) -> None:
    _res, out, _archive, _spec = flagged
    data = json.loads(out.read_text())
    (flag,) = data["flags"]
    reason = flag["reason"]
    assert "above the plausibility ceiling of 40%" in reason
    flagged_id = _record(app, roster, "s001", data, tmp_path)
    public = dict(data, flags=[], environment=dict(
        data["environment"], data={"fashion_mnist": "public", "dogs_cats": "synthetic"}))
    plain_id = _record(app, roster, "s002", public, tmp_path)

    staff = app.test_client()
    sign_in_staff(staff)
    listing = staff.get("/staff/submissions").get_data(as_text=True)
    assert listing.count("mynet: implausible") == 1
    row = listing[listing.index(f'/staff/submissions/{flagged_id}"'):]
    row = row[:row.index("</tr>")]
    assert f'title="{html.escape(reason)}"' in row
    page = staff.get(f"/staff/submissions/{flagged_id}").get_data(as_text=True)
    assert "flagged: mynet" in page
    assert html.escape(reason) in page
    assert "Note: dogs_cats is a synthetic stand-in data set, not real photos." in page
    assert "PUBLIC" not in page  # graded on the instructor's private set
    other = staff.get(f"/staff/submissions/{plain_id}").get_data(as_text=True)
    assert "flagged:" not in other
    assert "Note: fashion_mnist is a PUBLIC data set: anyone can have its labels" in other

    sign_in(client, roster.secrets["s001"])
    mine = client.get(f"/submissions/{flagged_id}").get_data(as_text=True)
    assert "30 / 30 points" in mine  # MyNet keeps its points: a flag changes no score
    assert "plausibility" not in mine
    assert "flagged" not in mine
    # Under the part it applies to, said of the part (no data set's internal name).
    ranked = mine[mine.index(f'id="part-{app.extensions["leaderboard"].spec.ranked_part}"'):]
    assert "Note: the hidden data of this part is a synthetic stand-in data set, not real photos." in ranked
    assert "dogs_cats" not in mine
    for path in (f"/api/submissions/{flagged_id}", "/api/submissions"):
        api = client.get(path).get_json()
        assert "plausibility" not in json.dumps(api), path
    assert "flags" not in client.get(f"/api/submissions/{flagged_id}").get_json()["result"]

    sign_in(client, roster.secrets["s002"])
    theirs = client.get(f"/submissions/{plain_id}").get_data(as_text=True)
    assert "Note: the hidden data of this part is a PUBLIC data set: anyone can have its labels" in theirs
