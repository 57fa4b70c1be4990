"""Sign-in throttling: failed sign-ins counted per account and per client address.

Every failure is a row (``SignInFailure``) in the service's database, so all web processes and
machines count together. A key with ``max_failures`` failures within the last ``window_s``
seconds is locked: every sign-in on it, a correct one too, is refused (429) until the oldest of
those failures is ``window_s`` old. A success clears the account's failures, never the
address's: otherwise one account the attacker owns would reset the address between guesses.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlmodel import Session, col, select

from leaderboard.models import SignInFailure

KEY_CHARS = 200


@dataclass(frozen=True)
class Limit:
    """At most ``max_failures`` failed sign-ins on ``key`` within the window."""

    key: str
    max_failures: int


def account_key(kind: str, name: str) -> str:
    """The key of an account (``staff``: an instructor's username, in any letter case)."""
    return f"{kind}:{name.strip().lower()}"[:KEY_CHARS]


def address_key(kind: str, address: str) -> str:
    """The key of a client address for one kind of sign-in; IPv6 by its /64 network, which one
    machine can fill with addresses of its own."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"{kind}@{address}"[:KEY_CHARS]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"{kind}@{ip.ipv4_mapped}"
        return f"{kind}@{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"{kind}@{ip}"


def wait_s(session: Session, *, limits: Iterable[Limit], window_s: float, now: datetime) -> int:
    """Seconds until every key in ``limits`` may try again; 0 when none is locked."""
    since = now - timedelta(seconds=window_s)
    longest = 0.0
    for limit in limits:
        nth_newest = session.exec(
            select(SignInFailure.at)
            .where(SignInFailure.key == limit.key, SignInFailure.at > since)
            .order_by(col(SignInFailure.at).desc())
            .offset(max(limit.max_failures, 1) - 1)
            .limit(1)
        ).first()
        if nth_newest is not None:  # the key stays locked until that failure leaves the window
            longest = max(longest, (nth_newest - since).total_seconds())
    return math.ceil(longest)


def record_failure(session: Session, *, limits: Iterable[Limit], window_s: float, now: datetime) -> int:
    """Count one failed sign-in against every key; the seconds to wait now (0: not locked)."""
    limits = list(limits)
    session.execute(delete(SignInFailure).where(col(SignInFailure.at) < now - timedelta(seconds=window_s)))
    for limit in limits:
        session.add(SignInFailure(key=limit.key, at=now))
    session.flush()
    return wait_s(session, limits=limits, window_s=window_s, now=now)


def forget(session: Session, *, key: str) -> None:
    """A successful sign-in on an account: its failures no longer count (the address's do)."""
    session.execute(delete(SignInFailure).where(col(SignInFailure.key) == key))


def retry_message(wait: int, now: datetime) -> str:
    """The sentence a person reads: how long to wait, and until when."""
    at = now + timedelta(seconds=wait)
    minutes, seconds = divmod(wait, 60)
    span = f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
    return f"Too many failed sign-ins; try again in {span} (at {at:%H:%M:%S} UTC)."
