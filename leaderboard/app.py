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

from grader.config import Assignment
from grader.course import Course, load_course
from leaderboard.db import make_engine, session_scope
from leaderboard.ranking import BoardCache
from leaderboard.settings import WebSettings
from leaderboard.submissions import ensure_assignment
from leaderboard.tasks import GradingQueue

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Lab:
    """One assignment of the course as the web app serves it: its spec and its row's id."""

    spec: Assignment
    id: int

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass
class Services:
    """What a request needs besides the request: settings, course, database, queue, cache."""

    settings: WebSettings
    course: Course
    engine: Engine
    queue: GradingQueue
    board_cache: BoardCache = field(default_factory=BoardCache)
    _ids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lab(self, name: str | None = None) -> Lab:
        """Assignment ``name`` (default: the course's default); its row is made on first use.

        SpecError for a name the course does not have.
        """
        spec = self.course.get(name)
        if spec.name not in self._ids:
            with self._lock, session_scope(self.engine) as session:
                row_id = ensure_assignment(session, spec=spec).id
                assert row_id is not None
                self._ids[spec.name] = row_id
        return Lab(spec, self._ids[spec.name])

    @property
    def spec(self) -> Assignment:
        """The default assignment's spec (pages use ``lab()``: the request's assignment)."""
        return self.course.get()

    def assignment_id(self) -> int:
        """The default assignment's row id (pages use ``lab().id``)."""
        return self.lab().id

    def labs(self) -> list[Lab]:
        """Every assignment of the course, in the course's order."""
        return [self.lab(spec.name) for spec in self.course]

    def lab_of(self, assignment_id: int) -> Lab:
        """The assignment whose row has this id (a submission's ``assignment_id``)."""
        for lab in self.labs():
            if lab.id == assignment_id:
                return lab
        raise LookupError(f"assignment row {assignment_id} is not in this course")


def services() -> Services:
    return current_app.extensions["leaderboard"]


def lab() -> Lab:
    """The assignment this request is about: ``/a/<name>/…``, else the course's default."""
    return services().lab(g.get("assignment"))


def upload_limit() -> int:
    """The largest upload this request's assignment takes (or the service's own limit)."""
    return services().settings.max_upload_bytes or lab().spec.limits.upload_bytes


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
    course = load_course(settings.grader)
    max_upload = settings.max_upload_bytes or max(spec.limits.upload_bytes for spec in course)
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
        course=course,
        engine=make_engine(settings.db_url),
        queue=GradingQueue(settings),
        board_cache=BoardCache(prepare=board.prepare),
    )
    app.teardown_appcontext(_close_db)
    try:
        app.extensions["leaderboard"].labs()
    except SQLAlchemyError:  # no schema yet: `flask init-db` makes it
        log.info("database not initialised yet; run `flask --app leaderboard init-db`")

    from leaderboard import bodies, commands, routes, security
    from leaderboard.views import api, auth, internal, similarity, staff, staff_people, student
    from leaderboard.views import course as course_page

    if settings.proxy_hops:  # behind N reverse proxies: the client address is theirs to tell
        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]  # Flask documents replacing wsgi_app to add middleware
    bodies.init_app(app)
    security.init_app(app)
    app.register_blueprint(course_page.bp)
    app.register_blueprint(board.bp)
    app.register_blueprint(auth.bp)
    app.register_blueprint(student.bp)
    app.register_blueprint(staff.bp)
    app.register_blueprint(staff_people.bp)
    app.register_blueprint(similarity.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(internal.bp)
    commands.init_app(app)
    routes.init_app(app)
    return app
