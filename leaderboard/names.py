"""When two display names are the same name: after NFKC, in any letter case, or looking alike.

"Looking alike" is Unicode's confusable skeleton (UTS #39, section 4): the name in NFD, each
character replaced by the prototype of its class in Unicode's ``confusables.txt``, NFD again.
The table comes from the ``confusable-homoglyphs`` package, which lists for every character of
``confusables.txt`` the others it maps to or from; the classes are read off that list. Cyrillic
A (U+0410) and Latin A, "rn" and "m", "l", "I" and "1" fall into one class each.
"""

from __future__ import annotations

import functools
import unicodedata

from confusable_homoglyphs.confusables import confusables_data

LRM = "\u200e"  # the package wraps right-to-left characters in marks, for display


def _plain(text: str) -> str:
    return text.replace(LRM, "")


@functools.cache
def _representatives() -> dict[str, str]:
    """Every character (or sequence) of the table -> one fixed member of its class.

    In the package's list a source points to its prototype and a prototype to all its sources,
    so two steps from any member reach the whole class. A prototype of several characters
    (such as "rn" for "m") is preferred, so that its own characters are mapped as they are.
    """
    representative: dict[str, str] = {}
    for key, entries in confusables_data.items():
        members = {_plain(key)}
        for entry in entries:
            members.add(_plain(entry["c"]))
            members.update(_plain(e["c"]) for e in confusables_data.get(entry["c"], ()))
        longer = sorted(m for m in members if len(m) > 1)
        chosen = longer[0] if longer else min(members)
        for member in members:
            if len(member) == 1:
                representative.setdefault(member, chosen)
    return representative


def skeleton(text: str) -> str:
    """The confusable skeleton of ``text``: equal for strings that look alike."""
    table = _representatives()
    out = unicodedata.normalize("NFD", text)
    for _ in range(3):  # a several-character prototype is mapped once more, character by character
        mapped = unicodedata.normalize("NFD", "".join(table.get(ch, ch) for ch in out))
        if mapped == out:
            break
        out = mapped
    return out


@functools.lru_cache(maxsize=8192)
def name_keys(name: str) -> frozenset[tuple[str, str]]:
    """What two names are compared by: equal in any key means the same name to a reader.

    ``exact``: the skeleton after NFKC (so "I" and "l" collide, as they look alike);
    ``folded``: the skeleton after NFKC and case folding (so "ALICE" and "alice" with a Cyrillic a collide).
    """
    nfkc = unicodedata.normalize("NFKC", name)
    folded = unicodedata.normalize("NFKC", nfkc.casefold())
    return frozenset({("exact", skeleton(nfkc)), ("folded", skeleton(folded))})


def same_name(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` would be read as the same name."""
    return bool(name_keys(a) & name_keys(b))
