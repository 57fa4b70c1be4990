"""The web service's settings: one frozen object built at start-up and passed down."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grader.config import Settings, parse_number

ENV_PREFIX = "LEADERBOARD_"


def _read_or_make_key(path: Path) -> str:
    """A random key kept in the instance folder, so every process of one service shares it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        pass
    key = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(key)
    except FileExistsError:  # another process made it first; use theirs
        pass
    return path.read_text(encoding="utf-8").strip()


@dataclass(frozen=True)
class WebSettings:
    """Everything the web app and the grading worker need; units in the names.

    ``database_url`` empty means SQLite at ``<instance>/leaderboard.db``; ``queue_url``
    empty means Huey's SQLite storage at ``<instance>/queue.db``, ``redis://…`` means Redis.
    """

    grader: Settings = field(default_factory=Settings.from_env)
    instance_path: Path = field(default_factory=lambda: Settings.from_env().home / "instance")
    database_url: str = ""
    queue_url: str = ""
    queue_name: str = "grader"
    secret_key: str = ""  # empty: a key file in the instance folder
    roster_key: str = ""  # derives student secrets; empty: a key file in the instance folder
    max_upload_bytes: int = 0  # 0: the assignment's limits.upload_bytes
    upload_rate_count: int = 5  # at most this many uploads per student ...
    upload_rate_window_s: float = 60.0  # ... within this window
    signin_window_s: float = 600.0  # failed sign-ins count for this long; a locked key waits it out
    signin_account_failures: int = 10  # an instructor account is locked after this many failures
    signin_address_failures: int = 30  # a client address (per kind of sign-in) after this many
    heartbeat_s: float = 5.0  # how often a worker says it is still grading
    stale_after_s: float = 60.0  # no heartbeat for this long: the worker is gone, re-queue
    grading_margin_s: float = 120.0  # on top of the spec's wall time before a run is stuck
    sweep_interval_s: float = 15.0  # how often a worker looks for stuck or lost submissions
    lost_after_s: float = 120.0  # queued this long and not in the queue: enqueue again
    max_grading_attempts: int = 3  # runs of one submission before it is a grader fault
    fault_retry_after_s: float = 30.0  # a grader fault with runs left is tried again this much later
    worker_threads: int = 1  # submissions one worker process grades at once
    archive_url: str = ""  # the web app's address, for workers without the upload folder
    flag_upload_count: int = 40  # flag students with more uploads than this
    flag_score_jump: float = 0.25  # flag a rise of the ranked value by more than this at once
    auto_freeze: bool = True  # freeze the board at the bonus deadline by itself
    poll_interval_s: float = 2.0  # how often open pages ask for fresh status
    board_poll_interval_s: float = 10.0
    secure_cookies: bool = False  # set on behind HTTPS
    proxy_hops: int = 0  # reverse proxies in front that set X-Forwarded-For (0: the peer is the client)
    enforce_deadlines: bool = True  # refuse uploads before `opens` and after `final`

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.instance_path / 'leaderboard.db'}"

    @property
    def upload_dir(self) -> Path:
        return self.instance_path / "uploads"

    @property
    def queue_file(self) -> Path:
        return self.instance_path / "queue.db"

    def with_keys(self) -> WebSettings:
        """Fill in the session and roster keys from the instance folder when not given."""
        return replace(
            self,
            secret_key=self.secret_key or _read_or_make_key(self.instance_path / "secret_key"),
            roster_key=self.roster_key or _read_or_make_key(self.instance_path / "roster_key"),
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> WebSettings:
        """Defaults, overridden by ``LEADERBOARD_*`` variables, overridden by keyword arguments."""
        env = os.environ if environ is None else environ
        grader = overrides.pop("grader", None) or Settings.from_env(env)
        values: dict[str, Any] = {
            "grader": grader,
            "instance_path": Path(env.get(ENV_PREFIX + "INSTANCE", grader.home / "instance")),
        }
        for f in cls.__dataclass_fields__.values():
            key = ENV_PREFIX + f.name.upper()
            if f.name in ("grader", "instance_path") or key not in env:
                continue
            raw = env[key]
            default = f.default
            if isinstance(default, bool):
                values[f.name] = raw.lower() not in ("0", "false", "no", "")
            elif isinstance(default, int | float):
                values[f.name] = parse_number(key, raw, type(default))
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)
