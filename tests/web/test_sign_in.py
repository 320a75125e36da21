"""Signing in: sessions, their cookie, their end, the throttle, CSRF and the security headers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dripstone import clock, db
from dripstone.audit.models import AuditEvent
from dripstone.users import service as users
from dripstone.users import sessions
from dripstone.users.models import Role, User
from dripstone.web.auth import SESSION_COOKIE
from tests.web.conftest import FORM_TOKEN, PASSWORD, Team, csrf_of, sign_in


def _attempt(
    client: TestClient, email: str, password: str, next_path: str = "/"
) -> httpx2.Response:
    page = client.get("/sign-in")
    token = FORM_TOKEN.search(page.text)
    assert token is not None
    return client.post(
        "/sign-in",
        data={"email": email, "password": password, "form_token": token[1], "next": next_path},
        follow_redirects=False,
    )


def test_a_visitor_is_sent_to_sign_in_and_back_where_they_were_going(
    client: TestClient, team: Team
) -> None:
    answer = client.get("/?days=7", follow_redirects=False)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/sign-in?next=/%3Fdays%3D7"
    signed = _attempt(client, team.emails[Role.EDITOR], PASSWORD, "/?days=7")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/?days=7"


@pytest.mark.parametrize("target", ["//evil.example.com/", "https://evil.example.com/", "/\\x"])
def test_after_sign_in_the_browser_never_goes_to_another_site(
    client: TestClient, team: Team, target: str
) -> None:
    signed = _attempt(client, team.emails[Role.OWNER], PASSWORD, target)
    assert signed.headers["location"] == "/"


def test_the_session_cookie_is_httponly_lax_and_secure_only_over_https(
    client: TestClient, team: Team
) -> None:
    signed = _attempt(client, team.emails[Role.OWNER], PASSWORD)
    cookie = signed.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "secure" not in cookie
    state = client.app.state  # type: ignore[attr-defined]
    previous = state.public_url
    state.public_url = "https://mail.example.com"
    try:
        client.cookies.clear()
        signed = _attempt(client, team.emails[Role.OWNER], PASSWORD)
    finally:
        state.public_url = previous
    assert "; secure" in signed.headers["set-cookie"].lower()


def test_a_wrong_password_is_refused_keeping_the_address_and_opening_no_session(
    client: TestClient, team: Team
) -> None:
    refused = _attempt(client, team.emails[Role.OWNER], "not the password")
    assert refused.status_code == 401
    assert "do not match" in refused.text
    assert f'value="{team.emails[Role.OWNER]}"' in refused.text
    assert SESSION_COOKIE not in client.cookies
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_disabled_user_cannot_sign_in(
    client: TestClient, team: Team, database: db.Database
) -> None:
    with database.transaction() as session:
        users.disable_user(session, team.emails[Role.EDITOR])
    assert _attempt(client, team.emails[Role.EDITOR], PASSWORD).status_code == 401


def test_the_sign_in_form_refuses_a_post_that_did_not_come_from_it(
    client: TestClient, team: Team
) -> None:
    forged = client.post(
        "/sign-in",
        data={"email": team.emails[Role.OWNER], "password": PASSWORD, "form_token": "forged"},
        follow_redirects=False,
    )
    assert forged.status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_too_many_failures_for_an_address_are_throttled_even_with_the_right_password(
    client: TestClient, team: Team
) -> None:
    for _ in range(sessions.MAX_FAILURES_PER_EMAIL):
        assert _attempt(client, team.emails[Role.OWNER], "wrong").status_code == 401
    throttled = _attempt(client, team.emails[Role.OWNER], PASSWORD)
    assert throttled.status_code == 429
    assert "Too many failed sign-ins" in throttled.text
    assert "minute" in throttled.text
    # Another address from the same IP is not held up by the first one's count.
    assert _attempt(client, team.emails[Role.VIEWER], PASSWORD).status_code == 303


def test_the_throttle_lifts_after_its_window(
    client: TestClient, team: Team, manual_clock: clock.ManualClock
) -> None:
    for _ in range(sessions.MAX_FAILURES_PER_EMAIL):
        _attempt(client, team.emails[Role.OWNER], "wrong")
    assert _attempt(client, team.emails[Role.OWNER], PASSWORD).status_code == 429
    manual_clock.advance(sessions.THROTTLE_WINDOW + timedelta(seconds=1))
    assert _attempt(client, team.emails[Role.OWNER], PASSWORD).status_code == 303


def test_one_ip_is_throttled_across_addresses(client: TestClient, team: Team) -> None:
    for number in range(sessions.MAX_FAILURES_PER_IP):
        _attempt(client, f"nobody{number}@example.com", "wrong")
    assert _attempt(client, team.emails[Role.OWNER], PASSWORD).status_code == 429


def test_signing_in_issues_a_new_session_token_whatever_the_browser_held(
    client: TestClient, team: Team
) -> None:
    client.cookies.set(SESSION_COOKIE, "planted-by-an-attacker")
    signed = _attempt(client, team.emails[Role.OWNER], PASSWORD)
    issued = signed.headers["set-cookie"]
    assert issued.startswith(f"{SESSION_COOKIE}=")
    assert "planted-by-an-attacker" not in issued
    planted = TestClient(client.app, cookies={SESSION_COOKIE: "planted-by-an-attacker"})
    assert planted.get("/", follow_redirects=False).status_code == 303


@pytest.fixture
def owner(client: TestClient, team: Team) -> TestClient:
    return sign_in(client, team.emails[Role.OWNER])


def test_a_session_ends_after_inactivity_and_lives_on_while_used(
    manual_clock: clock.ManualClock, owner: TestClient
) -> None:
    manual_clock.advance(sessions.IDLE_TIMEOUT - timedelta(minutes=5))
    assert owner.get("/").status_code == 200  # activity: the idle time starts again
    manual_clock.advance(sessions.IDLE_TIMEOUT - timedelta(minutes=5))
    assert owner.get("/").status_code == 200
    manual_clock.advance(sessions.IDLE_TIMEOUT + timedelta(minutes=1))
    assert owner.get("/", follow_redirects=False).status_code == 303


def test_signing_out_ends_the_session_for_good(owner: TestClient) -> None:
    token = owner.cookies[SESSION_COOKIE]
    signed_out = owner.post(
        "/sign-out", data={"csrf_token": csrf_of(owner)}, follow_redirects=False
    )
    assert signed_out.status_code == 303
    replayed = TestClient(owner.app, cookies={SESSION_COOKIE: token})
    assert replayed.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize(
    "end",
    [
        lambda session, email: users.reset_password(session, email, "another long password"),
        lambda session, email: users.disable_user(session, email),
        lambda session, email: sessions.close_all_sessions(
            session, session.scalars(select(User).where(User.email == email)).one()
        ),
    ],
    ids=["password reset", "disabled", "signed out everywhere"],
)
def test_a_reset_a_disable_or_sign_out_everywhere_ends_open_sessions(
    manual_clock: clock.ManualClock,
    client: TestClient,
    team: Team,
    database: db.Database,
    end: Callable[[object, str], object],
) -> None:
    editor = sign_in(client, team.emails[Role.EDITOR])
    manual_clock.advance(timedelta(seconds=1))
    with database.transaction() as session:
        end(session, team.emails[Role.EDITOR])
    assert editor.get("/", follow_redirects=False).status_code == 303


def test_a_post_without_the_session_csrf_token_or_from_another_site_is_refused(
    owner: TestClient,
) -> None:
    token = csrf_of(owner)
    assert owner.post("/sign-out", data={}, follow_redirects=False).status_code == 403
    assert owner.post("/sign-out", data={"csrf_token": "x" * 43}).status_code == 403
    cross_site = owner.post(
        "/sign-out",
        data={"csrf_token": token},
        headers={"origin": "https://evil.example.com"},
        follow_redirects=False,
    )
    assert cross_site.status_code == 403
    assert owner.get("/", follow_redirects=False).status_code == 200  # still signed in
    assert (
        owner.post("/sign-out", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )


def test_a_sign_in_is_in_the_audit_log_without_the_address(
    owner: TestClient, team: Team, database: db.Database
) -> None:
    with database.read_sessions() as session:
        events = list(session.scalars(select(AuditEvent)))
    assert [(e.action, e.actor_type, e.actor_label, e.status) for e in events] == [
        ("POST /sign-in", "user", "owner", 303)
    ]
    assert team.emails[Role.OWNER] not in events[0].object_ids


def test_pages_cannot_be_framed_or_cached_and_carry_the_policy(owner: TestClient) -> None:
    page = owner.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-content-type-options"] == "nosniff"


def test_the_api_answers_json_and_dashboard_addresses_answer_pages(owner: TestClient) -> None:
    missing = owner.get("/no-such-page")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "There is no page at this address" in missing.text
    api = owner.get("/v1/marketing/subscribers")
    assert api.status_code == 401  # a session is not an API key
    assert api.headers["content-type"].startswith("application/json")
