"""Sign-in throttling: per account and per client address, for the student and staff sign-in
pages and the API's Bearer secrets; counted in the database, so two app processes (two gunicorn
workers, two machines) share the counts."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest

from leaderboard import create_app
from leaderboard.accounts import create_instructor
from leaderboard.db import session_scope
from leaderboard.settings import WebSettings
from leaderboard.throttle import address_key
from tests.leaderboard.factories import tiny_zip
from tests.leaderboard.helpers import INSTRUCTOR, Roster, csrf_of

WRONG = "not the password"


def _client(app: Any, address: str) -> Any:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def staff_sign_in(client: Any, username: str, password: str) -> Any:
    token = csrf_of(client, "/staff/login")
    return client.post("/staff/login", data={"username": username, "password": password, "csrf_token": token})


def student_sign_in(client: Any, secret: str) -> Any:
    return client.post("/login", data={"secret": secret, "csrf_token": csrf_of(client)})


def api_list(client: Any, secret: str) -> Any:
    return client.get("/api/submissions", headers={"Authorization": f"Bearer {secret}"})


def _dispose(*apps: Any) -> None:
    for app in apps:
        app.extensions["leaderboard"].engine.dispose()


def test_forty_wrong_instructor_passwords_in_a_few_seconds_get_429s(web_settings: WebSettings,
                                                                    roster: Roster) -> None:
    # Two app processes on one database, as two gunicorn workers or two machines would be.
    first, second = create_app(web_settings), create_app(web_settings)
    attacker = [_client(first, "203.0.113.7"), _client(second, "203.0.113.7")]
    started = time.monotonic()
    codes = [staff_sign_in(attacker[i % 2], INSTRUCTOR[0], WRONG).status_code for i in range(40)]
    assert time.monotonic() - started < 30
    assert codes == [401] * 9 + [429] * 31
    locked = staff_sign_in(attacker[0], INSTRUCTOR[0], WRONG)
    retry_after = int(locked.headers["Retry-After"])
    assert 590 <= retry_after <= 600
    html = locked.get_data(as_text=True)
    minutes, seconds = divmod(retry_after, 60)  # 600 s when the test ran within a second
    assert f"Too many failed sign-ins; try again in {minutes} min {seconds} s" in html
    assert " UTC)." in html
    assert 'name="password"' in html  # the form is still there
    # The right password is refused too until the retry time, from anywhere (the account is locked).
    assert staff_sign_in(attacker[1], *INSTRUCTOR).status_code == 429
    assert staff_sign_in(_client(first, "198.51.100.2"), *INSTRUCTOR).status_code == 429
    # Another account is not affected, from this address (10 failures < 30) or another.
    with session_scope(first.extensions["leaderboard"].engine) as session:
        create_instructor(session, username="ta", password="another good password")
    assert staff_sign_in(attacker[0], "ta", "another good password").status_code == 302
    assert staff_sign_in(_client(second, "198.51.100.2"), "ta", "another good password").status_code == 302
    # Nor are students, whose sign-in is counted apart.
    assert student_sign_in(attacker[1], roster.secrets["s001"]).status_code == 302
    _dispose(first, second)


def test_the_right_password_works_again_after_the_retry_time(web_settings: WebSettings,
                                                             roster: Roster) -> None:
    app = create_app(replace(web_settings, signin_window_s=2.0, signin_account_failures=3))
    client = _client(app, "203.0.113.8")
    assert [staff_sign_in(client, INSTRUCTOR[0], WRONG).status_code for _ in range(3)] == [401, 401, 429]
    refused = staff_sign_in(client, *INSTRUCTOR)
    assert refused.status_code == 429
    time.sleep(int(refused.headers["Retry-After"]) + 0.2)
    assert staff_sign_in(client, *INSTRUCTOR).status_code == 302
    # A success clears the account's count: three new failures are needed to lock it again.
    other = _client(app, "203.0.113.9")
    assert [staff_sign_in(other, INSTRUCTOR[0], WRONG).status_code for _ in range(3)] == [401, 401, 429]
    _dispose(app)


def test_wrong_secrets_lock_the_address_for_the_page_and_the_api(web_settings: WebSettings,
                                                                 roster: Roster) -> None:
    app = create_app(replace(web_settings, signin_address_failures=5))
    page, other = _client(app, "203.0.113.10"), _client(app, "198.51.100.3")
    assert [student_sign_in(page, f"wrong-{i}").status_code for i in range(6)] == [401] * 4 + [429] * 2
    assert student_sign_in(page, roster.secrets["s001"]).status_code == 429  # a right one too
    api = api_list(page, roster.secrets["s001"])
    assert api.status_code == 429
    assert api.get_json()["error"].startswith("Too many failed sign-ins; try again in")
    assert 0 < int(api.headers["Retry-After"]) <= 600
    upload = page.post("/api/submissions", data=tiny_zip(), content_type="application/zip",
                       headers={"Authorization": f"Bearer {roster.secrets['s001']}"})
    assert upload.status_code == 429
    # Another address is not affected.
    assert student_sign_in(other, "wrong").status_code == 401
    assert api_list(other, roster.secrets["s002"]).status_code == 200
    assert student_sign_in(other, roster.secrets["s002"]).status_code == 302
    # Wrong Bearer secrets count like wrong secrets on the page.
    bearer = _client(app, "203.0.113.11")
    codes = [api_list(bearer, f"wrong-{i}").status_code for i in range(6)]
    assert codes == [401] * 4 + [429] * 2
    assert student_sign_in(bearer, roster.secrets["s003"]).status_code == 429
    _dispose(app)


def test_successful_sign_ins_do_not_reset_the_address(web_settings: WebSettings, roster: Roster) -> None:
    """An attacker with one account of their own cannot clear the address's count with it."""
    app = create_app(replace(web_settings, signin_address_failures=6, signin_account_failures=100))
    client = _client(app, "203.0.113.12")
    codes = []
    for i in range(8):
        codes.append(staff_sign_in(client, f"guess-{i}", WRONG).status_code)
        if i < 5:
            assert staff_sign_in(client, *INSTRUCTOR).status_code == 302
            client.post("/logout", data={"csrf_token": csrf_of(client, "/staff/")})
    assert codes == [401] * 5 + [429] * 3
    assert staff_sign_in(client, *INSTRUCTOR).status_code == 429
    _dispose(app)


def test_behind_a_proxy_the_forwarded_address_counts(web_settings: WebSettings, roster: Roster) -> None:
    app = create_app(replace(web_settings, proxy_hops=1, signin_address_failures=3))
    proxy = _client(app, "10.0.0.1")  # every request comes from the proxy

    def attempt(forwarded: str) -> int:
        token = csrf_of(proxy)
        return proxy.post("/login", data={"secret": "wrong", "csrf_token": token},
                          headers={"X-Forwarded-For": forwarded}).status_code

    assert [attempt("203.0.113.20") for _ in range(4)] == [401, 401, 429, 429]
    assert attempt("198.51.100.20") == 401
    _dispose(app)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.5", "secret@203.0.113.5"),
        ("2001:db8:1:2:aaaa::1", "secret@2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::9", "secret@2001:db8:1:2::/64"),  # one /64: one key
        ("::ffff:203.0.113.5", "secret@203.0.113.5"),
        ("", "secret@"),
    ],
)
def test_address_keys(address: str, key: str) -> None:
    assert address_key("secret", address) == key
