"""Display names: the same name after NFKC, in any letter case, or by look (Unicode's confusable
skeletons), is refused with a clear sentence; different names are not."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from confusable_homoglyphs.confusables import confusables_data

from leaderboard.accounts import AccountError, RosterEntry, import_roster, set_display_name
from leaderboard.db import make_engine, session_scope
from leaderboard.models import Student
from leaderboard.names import same_name, skeleton
from leaderboard.settings import WebSettings
from tests.leaderboard.helpers import Roster, csrf_of, sign_in

TAKEN = "That display name is taken; choose another."
LOOKS = "That display name looks too much like \u201c{}\u201d, which is taken; choose another."

# (the name someone has, the name another asks for, the refusal or None when it is accepted)
CASES = [
    ("Alice", "\u0410lice", LOOKS),  # Cyrillic A
    ("Alice", "\u0410\u04c0i\u0441e", LOOKS),  # Cyrillic A, palochka, es
    ("paypal", "\u0440ay\u0440al", LOOKS),  # Cyrillic er
    ("Ian", "lan", LOOKS),  # capital I and small L
    ("modern", "rnodern", LOOKS),  # rn and m
    ("Neo", "N\u0435\u043e", LOOKS),  # Cyrillic ie and o
    ("Alice", "alice", TAKEN),
    ("Alice", "ALICE", TAKEN),
    ("Alice", "\uff21\uff4c\uff49\uff43\uff45", TAKEN),  # fullwidth: NFKC makes it Alice
    ("Zo\u00eb", "Zoe\u0308", TAKEN),  # composed and decomposed
    ("\ufb01sh", "fish", TAKEN),  # the fi ligature
    ("Stra\u00dfe", "STRASSE", TAKEN),  # case folding, not just lower()
    ("Alice", "Alicia", None),
    ("Ada", "Eve", None),
    ("Dmitri", "\u0414\u043c\u0438\u0442\u0440\u0438\u0439", None),
    ("\u674e", "\u674e\u56db", None),
    ("s-1", "s-10", None),
]


@pytest.mark.parametrize(("held", "asked", "refusal"), CASES)
def test_display_names_that_read_alike_are_refused(web_settings: WebSettings, roster: Roster,
                                                   held: str, asked: str, refusal: str | None) -> None:
    engine = make_engine(web_settings.db_url)
    with session_scope(engine) as session:
        first = session.get(Student, roster.ids["s001"])
        second = session.get(Student, roster.ids["s002"])
        assert first is not None
        assert second is not None
        set_display_name(session, student=first, raw=held)
    with session_scope(engine) as session:
        if refusal is None:
            assert set_display_name(session, student=second, raw=asked) == unicodedata.normalize("NFC", asked)
        else:
            with pytest.raises(AccountError) as caught:
                set_display_name(session, student=second, raw=asked)
            assert str(caught.value) == refusal.format(held)
    engine.dispose()


def test_the_profile_page_says_why_and_keeps_the_form(client: Any, roster: Roster) -> None:
    sign_in(client, roster.secrets["s001"])
    token = csrf_of(client, "/profile")
    assert client.post("/profile", data={"display_name": "Alice", "csrf_token": token}).status_code == 302
    other = client.application.test_client()
    sign_in(other, roster.secrets["s002"])
    refused = other.post("/profile", data={"display_name": "\u0410lice",
                                           "csrf_token": csrf_of(other, "/profile")})
    assert refused.status_code == 400
    html = refused.get_data(as_text=True)
    assert "That display name looks too much like \u201cAlice\u201d, which is taken; choose another." in html
    assert 'name="display_name"' in html
    # The board's placeholder for students without a name is not a name.
    placeholder = other.post("/profile", data={"display_name": "(No Display Name)",
                                               "csrf_token": csrf_of(other, "/profile")})
    assert placeholder.status_code == 400
    # A student keeps their own name, in another letter case too.
    again = client.post("/profile", data={"display_name": "ALICE", "csrf_token": token})
    assert again.status_code == 302


def test_a_roster_with_names_that_read_alike_is_refused(web_settings: WebSettings, roster: Roster) -> None:
    engine = make_engine(web_settings.db_url)
    entries = [RosterEntry("n1", "N One", "n1@uni.example", "Alice"),
               RosterEntry("n2", "N Two", "n2@uni.example", "\u0410lice")]
    with session_scope(engine) as session, pytest.raises(AccountError) as caught:
        import_roster(session, entries=entries, roster_key="k")
    assert str(caught.value) == ("Roster id n1: the display name 'Alice' reads as '\u0410lice', which "
                                 "another student has; change one of them.")
    with session_scope(engine) as session, pytest.raises(AccountError, match="reads as 's-1'"):
        import_roster(session, entries=[RosterEntry("n3", "N", "n3@uni.example", "S-1")], roster_key="k")
    with session_scope(engine) as session:  # one's own name again is no clash
        assert import_roster(session, entries=[RosterEntry("s001", "Student 1", "s@uni.example", "S-1")],
                             roster_key="k") == (0, 1)
    engine.dispose()


def test_every_pair_of_the_confusables_table_gets_one_skeleton() -> None:
    """The classes read off the package's list are consistent: each source and its prototype
    get the same skeleton. Only pairs with a combining mark differ (the package lists marks
    drawn on a base letter, so the mark alone is not in the table)."""
    def marks(text: str) -> bool:
        return any(unicodedata.category(c).startswith("M") for c in unicodedata.normalize("NFD", text))

    pairs = [(key.replace("\u200e", ""), entry["c"].replace("\u200e", ""))
             for key, entries in confusables_data.items() for entry in entries]
    assert len(pairs) > 10_000
    apart = [(a, b) for a, b in pairs if skeleton(a) != skeleton(b)]
    assert [(a, b) for a, b in apart if not (marks(a) or marks(b))] == []
    assert len(apart) < len(pairs) // 100
    assert same_name("\u0410", "A")
