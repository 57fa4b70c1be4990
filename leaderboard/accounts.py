"""Instructors and students: passwords, roster import, per-student secrets, display names."""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlmodel import Session, select
from werkzeug.security import check_password_hash, generate_password_hash

from leaderboard.models import Instructor, Student
from leaderboard.names import name_keys
from leaderboard.ranking import ANONYMOUS

DISPLAY_NAME_MAX = 40
ROSTER_COLUMNS = ("id", "name", "email", "display_name")


class AccountError(ValueError):
    """A request about an account that cannot be carried out; the message says why."""


# --------------------------------------------------------------------------- instructors


def create_instructor(session: Session, *, username: str, password: str) -> Instructor:
    """Create an instructor, or set a new password for an existing one."""
    username = username.strip()
    if not username:
        raise AccountError("The username must not be empty.")
    if len(password) < 8:
        raise AccountError("The password must have at least 8 characters.")
    user = session.exec(select(Instructor).where(Instructor.username == username)).first()
    if user is None:
        user = Instructor(username=username, password_hash="")
    user.password_hash = generate_password_hash(password)
    session.add(user)
    session.flush()
    return user


def authenticate_instructor(session: Session, *, username: str, password: str) -> Instructor | None:
    user = session.exec(select(Instructor).where(Instructor.username == username.strip())).first()
    if user is None:
        check_password_hash(generate_password_hash("x"), password)  # same time either way
        return None
    return user if check_password_hash(user.password_hash, password) else None


# --------------------------------------------------------------------------- student secrets


def student_secret(roster_key: str, roster_id: str, generation: int = 0) -> str:
    """The secret a student signs in with: derived from the roster key, never stored."""
    digest = hmac.new(roster_key.encode(), f"{roster_id}\x00{generation}".encode(), hashlib.sha256).digest()
    text = base64.b32encode(digest[:15]).decode().lower()  # 24 characters, 120 bits
    return "-".join(text[i : i + 6] for i in range(0, 24, 6))


def hash_secret(secret: str) -> str:
    """What the database keeps to find a student by secret (the secret has 120 random bits)."""
    normalised = secret.strip().lower().replace(" ", "")
    return hashlib.sha256(normalised.encode()).hexdigest()


def student_by_secret(session: Session, *, secret: str) -> Student | None:
    if not secret or len(secret) > 200:
        return None
    return session.exec(select(Student).where(Student.secret_hash == hash_secret(secret))).first()


def rotate_secret(session: Session, *, student: Student, roster_key: str) -> str:
    """Give a student a new secret (the old one stops working) and return it."""
    student.secret_generation += 1
    secret = student_secret(roster_key, student.roster_id, student.secret_generation)
    student.secret_hash = hash_secret(secret)
    session.add(student)
    session.flush()
    return secret


# --------------------------------------------------------------------------- roster


@dataclass(frozen=True)
class RosterEntry:
    roster_id: str
    name: str
    email: str
    display_name: str = ""


def check_roster(text: str) -> tuple[list[RosterEntry], list[str]]:
    """Read a roster CSV with a header ``id,name,email[,display_name]``: the good entries and
    one message per problem, each naming its line (all of them, not only the first)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in ROSTER_COLUMNS[:3] if c not in header]
    if missing:
        return [], [
            f"The roster needs the columns id, name, email (optional display_name); "
            f"missing: {', '.join(missing)}."
        ]
    entries: list[RosterEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for line, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
        if not any(row.values()):
            continue
        roster_id = row.get("id", "")
        if not roster_id:
            problems.append(f"Roster line {line}: the id is empty.")
            continue
        if roster_id in seen:
            problems.append(f"Roster line {line}: the id {roster_id!r} appears twice.")
            continue
        seen.add(roster_id)
        display = row.get("display_name", "")
        if display:
            try:
                display = clean_display_name(display)
            except AccountError as exc:
                problems.append(f"Roster line {line}: {exc}")
                continue
        entries.append(RosterEntry(roster_id, row.get("name", ""), row.get("email", ""), display))
    return entries, problems


def parse_roster(text: str) -> list[RosterEntry]:
    """Read a roster CSV with a header ``id,name,email[,display_name]``; errors name the line."""
    entries, problems = check_roster(text)
    if problems:
        raise AccountError(problems[0])
    return entries


def import_roster(session: Session, *, entries: Iterable[RosterEntry], roster_key: str) -> tuple[int, int]:
    """Add new students and update the names of known ones; returns (added, updated).

    Refused as a whole (AccountError) when two display names would read as the same name."""
    known = {s.roster_id: s for s in session.exec(select(Student)).all()}
    entries = list(entries)
    names = {rid: s.display_name for rid, s in known.items()}
    names.update({e.roster_id: e.display_name for e in entries if e.display_name})
    for entry in entries:
        other = name_clash(names, entry.display_name, owner=entry.roster_id) if entry.display_name else None
        if other is not None:
            raise AccountError(f"Roster id {entry.roster_id}: the display name {entry.display_name!r} "
                               f"reads as {other!r}, which another student has; change one of them.")
    added = updated = 0
    for entry in entries:
        student = known.get(entry.roster_id)
        if student is None:
            secret = student_secret(roster_key, entry.roster_id, 0)
            student = Student(
                roster_id=entry.roster_id,
                name=entry.name,
                email=entry.email,
                display_name=entry.display_name,
                secret_hash=hash_secret(secret),
            )
            added += 1
        else:
            student.name, student.email = entry.name, entry.email
            if entry.display_name:
                student.display_name = entry.display_name
            updated += 1
        session.add(student)
    session.flush()
    return added, updated


def export_secrets(session: Session, *, roster_key: str) -> list[Mapping[str, str]]:
    """Every student's sign-in secret, for the instructor to hand out."""
    rows: list[Mapping[str, str]] = []
    for s in session.exec(select(Student).order_by(Student.roster_id)).all():
        rows.append(
            {
                "id": s.roster_id,
                "name": s.name,
                "email": s.email,
                "secret": student_secret(roster_key, s.roster_id, s.secret_generation),
            }
        )
    return rows


# --------------------------------------------------------------------------- display names


def clean_display_name(raw: str) -> str:
    """Trim and check a pseudonym: 1-40 printable characters (HTML is just text here)."""
    name = unicodedata.normalize("NFC", " ".join(raw.split()))
    if not name:
        raise AccountError("Choose a display name of at least one character.")
    if len(name) > DISPLAY_NAME_MAX:
        raise AccountError(f"A display name has at most {DISPLAY_NAME_MAX} characters.")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs") for ch in name):
        raise AccountError("A display name cannot hold control or invisible characters.")
    return name


def name_clash(names: Mapping[str, str], name: str, *, owner: str) -> str | None:
    """Another owner's name in ``names`` (owner -> display name) read as ``name``; or the
    placeholder the board shows for students without one."""
    keys = name_keys(name)
    if keys & name_keys(ANONYMOUS):
        return ANONYMOUS
    for other_owner, other in names.items():
        if other and other_owner != owner and keys & name_keys(other):
            return other
    return None


def _clash_message(name: str, other: str) -> str:
    if unicodedata.normalize("NFKC", name).casefold() == unicodedata.normalize("NFKC", other).casefold():
        return "That display name is taken; choose another."
    return f"That display name looks too much like \u201c{other}\u201d, which is taken; choose another."


def set_display_name(session: Session, *, student: Student, raw: str) -> str:
    """Set a student's public pseudonym: unique after NFKC, in any letter case, and by look
    (no Cyrillic A, U+0410, beside a Latin A; see ``leaderboard.names``)."""
    name = clean_display_name(raw)
    others = {str(i): n for i, n in session.exec(select(Student.id, Student.display_name)).all()}
    other = name_clash(others, name, owner=str(student.id))
    if other is not None:
        raise AccountError(_clash_message(name, other))
    student.display_name = name
    session.add(student)
    session.flush()
    return name
