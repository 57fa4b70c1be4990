"""Fixtures for the web service: real SQLite and PostgreSQL, real Redis, real worker processes.

PostgreSQL and Redis are used when reachable on 127.0.0.1 (or named by
``GRADER_TEST_POSTGRES_URL`` / ``GRADER_TEST_REDIS_URL``): each test session makes its own
PostgreSQL database and its own Redis queue names, and drops them at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from leaderboard.db import upgrade
from leaderboard.settings import WebSettings
from tests.leaderboard.factories import folder_zip, late_invalid_zip, tiny_good_zip, tiny_zip
from tests.leaderboard.helpers import (
    Roster,
    Stack,
    add_roster,
    build_stack,
    close_stack,
    grader_settings,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
INSTRUCTOR = ("prof", "correct horse battery")


def _reachable(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


# The default test run exercises PostgreSQL and Redis whenever the servers are there.
if "GRADER_TEST_POSTGRES_URL" not in os.environ and _reachable(5432):
    os.environ["GRADER_TEST_POSTGRES_URL"] = DEFAULT_PG
if "GRADER_TEST_REDIS_URL" not in os.environ and _reachable(6379):
    os.environ["GRADER_TEST_REDIS_URL"] = DEFAULT_REDIS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres") and not os.environ.get("GRADER_TEST_POSTGRES_URL"):
            item.add_marker(pytest.mark.skip(reason="GRADER_TEST_POSTGRES_URL is not set"))


# --------------------------------------------------------------------------- databases


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[], str]]:
    """Makes fresh PostgreSQL schemas for this session (dropped at its end).

    Each URL selects its own schema through ``search_path``: as isolated as a new database
    for our tables and Alembic's version table, and much quicker to make and drop.
    """
    base = os.environ.get("GRADER_TEST_POSTGRES_URL")
    made: list[str] = []
    admin = create_engine(base, isolation_level="AUTOCOMMIT") if base else None

    def make() -> str:
        if admin is None:
            pytest.skip("GRADER_TEST_POSTGRES_URL is not set")
        name = f"lb_test_{os.getpid()}_{secrets.token_hex(4)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        made.append(name)
        url = admin.url.update_query_dict({"options": f"-csearch_path={name}"})
        return url.render_as_string(hide_password=False)

    yield make
    if admin is not None:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_database: Callable[[], str]) -> str:
    """A migrated, empty database: a SQLite file, or a new PostgreSQL database."""
    url = f"sqlite:///{tmp_path / 'instance' / 'leaderboard.db'}"
    if request.param == "postgres":
        url = pg_database()
    upgrade(url)
    return url


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("GRADER_TEST_REDIS_URL")
    if not url:
        pytest.skip("GRADER_TEST_REDIS_URL is not set and no Redis on 127.0.0.1:6379")
    return url


# --------------------------------------------------------------------------- settings, app


@pytest.fixture
def web_settings(tmp_path: Path, db_url: str) -> WebSettings:
    """Settings for one test: its own instance folder, database and SQLite queue file.

    The grader home has no hidden data: tests that grade use the ``stack`` fixtures.
    """
    return WebSettings(
        grader=grader_settings(tmp_path / "grader-home"),
        instance_path=tmp_path / "instance",
        database_url=db_url,
        queue_name=f"t{secrets.token_hex(4)}",
        upload_rate_count=1000,
    ).with_keys()


@pytest.fixture
def app(web_settings: WebSettings) -> Any:
    from leaderboard import create_app

    app = create_app(web_settings)
    app.config.update(TESTING=True)
    yield app
    app.extensions["leaderboard"].engine.dispose()


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


@pytest.fixture
def runner(app: Any) -> Any:
    return app.test_cli_runner()


@pytest.fixture
def roster(web_settings: WebSettings) -> Roster:
    return add_roster(web_settings, 3)


# --------------------------------------------------------------------------- live stack


@pytest.fixture(scope="session")
def zips() -> dict[str, bytes]:
    """Real submissions: ``good`` (correct layers, tiny untrained nets: graded in seconds),
    ``crash`` (raises at import: graded ``crashed``), ``invalid`` (taken at upload, refused by
    the worker's intake once it reads the data), ``refused`` (the files inside a folder: refused
    at upload, never queued)."""
    return {
        "good": tiny_good_zip(),
        "crash": tiny_zip(
            {
                "numpy_nn.py": b"import time\ntime.sleep(2)\nraise RuntimeError('boom')\n",
                "pytorch_cnn.py": b"raise RuntimeError('boom')\n",
                "model.pt": b"not a checkpoint",
                "finetuned.pt": b"not a checkpoint",
            }
        ),
        "invalid": late_invalid_zip(),
        "refused": folder_zip(),
    }


@pytest.fixture(
    scope="session",
    params=[
        pytest.param(("sqlite", "sqlite"), id="sqlite-db+sqlite-queue"),
        pytest.param(("postgres", "redis"), id="postgres-db+redis-queue", marks=pytest.mark.postgres),
    ],
)
def stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    grader_home: Path,
    pg_database: Callable[[], str],
) -> Iterator[Stack]:
    """One running service per backend pair, shared by the session's tests."""
    db_kind, queue_kind = request.param
    tmp = tmp_path_factory.mktemp(f"stack-{db_kind}")
    db_url = pg_database() if db_kind == "postgres" else f"sqlite:///{tmp / 'instance' / 'lb.db'}"
    queue_url = ""
    if queue_kind == "redis":
        queue_url = os.environ.get("GRADER_TEST_REDIS_URL", "")
        if not queue_url:
            pytest.skip("no Redis")
    s = build_stack(tmp, grader_home=grader_home, db_url=db_url, queue_url=queue_url, students=10)
    yield s
    close_stack(s)


# --------------------------------------------------------------------------- the browser

CHROMIUM = "/usr/bin/chromium"  # Debian's, driven by Playwright (scripts/setup.sh --test)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if shutil.which(CHROMIUM) is None:
        pytest.skip("Debian's chromium is not installed (scripts/setup.sh --test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
