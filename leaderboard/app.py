"""The application factory: builds the services, registers the views, the commands and the
request hooks. Views reach the services through ``leaderboard.context``."""

from __future__ import annotations

import logging

from flask import Flask
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.middleware.proxy_fix import ProxyFix

from grader.course import load_course
from leaderboard import bodies, commands, routes, security
from leaderboard.context import Services, close_db
from leaderboard.db import make_engine
from leaderboard.ranking import BoardCache
from leaderboard.settings import WebSettings
from leaderboard.tasks import GradingQueue
from leaderboard.views import api, auth, board, internal, similarity, staff, staff_people, student
from leaderboard.views import course as course_page

log = logging.getLogger(__name__)


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
    app.extensions["leaderboard"] = Services(
        settings=settings,
        course=course,
        engine=make_engine(settings.db_url),
        queue=GradingQueue(settings),
        board_cache=BoardCache(prepare=board.prepare),
    )
    app.teardown_appcontext(close_db)
    try:
        app.extensions["leaderboard"].labs()
    except SQLAlchemyError:  # no schema yet: `flask init-db` makes it
        log.info("database not initialised yet; run `flask --app leaderboard init-db`")

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
