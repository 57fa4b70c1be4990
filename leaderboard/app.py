"""The application factory and the services every view reaches through ``services()``."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from flask import Flask, current_app, g
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from grader.config import Assignment, load_assignment
from leaderboard.db import make_engine, session_scope
from leaderboard.ranking import BoardCache
from leaderboard.settings import WebSettings
from leaderboard.submissions import ensure_assignment
from leaderboard.tasks import GradingQueue

log = logging.getLogger(__name__)


@dataclass
class Services:
    """What a request needs besides the request: settings, spec, database, queue, cache."""

    settings: WebSettings
    spec: Assignment
    engine: Engine
    queue: GradingQueue
    board_cache: BoardCache = field(default_factory=BoardCache)
    _assignment_id: int | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def assignment_id(self) -> int:
        """The id of this assignment's row, made on first use."""
        if self._assignment_id is None:
            with self._lock, session_scope(self.engine) as session:
                self._assignment_id = ensure_assignment(session, spec=self.spec).id
        assert self._assignment_id is not None
        return self._assignment_id


def services() -> Services:
    return current_app.extensions["leaderboard"]


def db() -> Session:
    """This request's database session (closed, and rolled back if not committed, at the end)."""
    if "db" not in g:
        g.db = Session(services().engine, expire_on_commit=False)
    return g.db


def _close_db(_exc: BaseException | None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def create_app(settings: WebSettings | None = None) -> Flask:
    """Build the web app; ``settings`` default to the environment (``LEADERBOARD_*``)."""
    settings = (settings or WebSettings.from_env()).with_keys()
    app = Flask(
        __name__,
        instance_path=str(settings.instance_path.resolve()),
        instance_relative_config=True,
    )
    spec = load_assignment(settings.grader.assignment_path)
    max_upload = settings.max_upload_bytes or spec.limits.upload_bytes
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        SESSION_COOKIE_NAME="leaderboard_session",
        JSON_SORT_KEYS=False,
        MAX_UPLOAD_BYTES=max_upload,
    )
    from leaderboard.views import board

    app.extensions["leaderboard"] = Services(
        settings=settings,
        spec=spec,
        engine=make_engine(settings.db_url),
        queue=GradingQueue(settings),
        board_cache=BoardCache(prepare=board.prepare),
    )
    app.teardown_appcontext(_close_db)
    try:
        app.extensions["leaderboard"].assignment_id()
    except SQLAlchemyError:  # no schema yet: `flask init-db` makes it
        log.info("database not initialised yet; run `flask --app leaderboard init-db`")

    from leaderboard import bodies, commands, security
    from leaderboard.views import api, auth, internal, similarity, staff, student

    if settings.proxy_hops:  # behind N reverse proxies: the client address is theirs to tell
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]  # Flask documents replacing wsgi_app to add middleware
    bodies.init_app(app)
    security.init_app(app)
    app.register_blueprint(board.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(student.bp)
    app.register_blueprint(staff.bp)
    app.register_blueprint(similarity.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(internal.bp)
    commands.init_app(app)
    return app
