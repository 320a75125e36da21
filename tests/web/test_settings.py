"""Settings, for owners only: users made with a password shown once, sessions ended
everywhere, API keys shown once and revoked, the sender settings without their secrets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dripstone import db
from dripstone.app import create_app
from dripstone.config import load_settings
from dripstone.delivery.pipeline import close_pipeline
from dripstone.users.models import Role
from dripstone.web import settings as settings_pages
from tests.conftest import SECRET
from tests.web.conftest import PASSWORD, Team, csrf_of, make_team, sign_in

SECRET_SHOWN = re.compile(r'<p class="shown-once" id="secret">([^<]+)</p>')


def shown_secret(page: str) -> str:
    found = SECRET_SHOWN.search(page)
    assert found is not None, page
    return found[1]


def user_id_of(page: str, email: str) -> str:
    found = re.search(rf"<td>{re.escape(email)}</td>.*?/settings/users/([0-9a-f-]+)/", page, re.S)
    assert found is not None, page
    return found[1]


@pytest.mark.parametrize("role", [Role.EDITOR, Role.VIEWER])
def test_editors_and_viewers_are_refused_every_settings_page(
    signed_in: Callable[[Role], TestClient], role: Role
) -> None:
    client = signed_in(role)
    assert 'href="/settings"' not in client.get("/").text
    for path in ("/settings", "/settings/audit"):
        assert client.get(path).status_code == 403
    token = csrf_of(client)
    for path in ("/settings/keys", "/settings/users"):
        answer = client.post(path, data={"csrf_token": token, "email": "x@example.com"})
        assert answer.status_code == 403


def test_an_api_key_is_shown_once_works_and_stops_working_when_revoked(
    signed_in: Callable[[Role], TestClient],
) -> None:
    owner = signed_in(Role.OWNER)
    made = owner.post("/settings/keys", data={"csrf_token": csrf_of(owner, "/settings")})
    assert made.status_code == 200
    assert made.headers["cache-control"] == "no-store"
    key = shown_secret(made.text)
    prefix = "_".join(key.split("_")[:2])  # ds_xxxxxxxx
    lists = owner.get(
        "/v1/marketing/subscription_lists", headers={"authorization": f"Token token={key}"}
    )
    assert lists.status_code == 200
    later = owner.get("/settings").text
    assert key not in later  # listed by its prefix only
    assert f"<code>{prefix}_…</code>" in later
    revoked = owner.post(
        f"/settings/keys/{prefix}/revoke",
        data={"csrf_token": csrf_of(owner, "/settings")},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    after = owner.get(
        "/v1/marketing/subscription_lists", headers={"authorization": f"Token token={key}"}
    )
    assert after.status_code == 401
    assert "revoked" in owner.get("/settings").text


def test_a_user_created_on_the_page_signs_in_with_the_password_shown(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    owner = signed_in(Role.OWNER)
    made = owner.post(
        "/settings/users",
        data={
            "csrf_token": csrf_of(owner, "/settings"),
            "username": "Robin",
            "email": "Robin@Example.com",
            "role": "editor",
        },
    )
    assert made.status_code == 200
    password = shown_secret(made.text)
    assert "robin@example.com" in made.text
    newcomer = TestClient(client.app)
    sign_in(newcomer, "robin@example.com", password)
    page = newcomer.get("/")
    assert page.status_code == 200
    assert "Robin" in page.text
    assert newcomer.get("/settings").status_code == 403  # an editor
    # The same address again is refused next to its field, and what was typed stays.
    again = owner.post(
        "/settings/users",
        data={
            "csrf_token": csrf_of(owner, "/settings"),
            "username": "Robin 2",
            "email": "robin@example.com",
            "role": "viewer",
        },
    )
    assert again.status_code == 422
    assert 'id="f-email-error"' in again.text
    assert 'value="Robin 2"' in again.text
    assert SECRET_SHOWN.search(again.text) is None


def test_sign_out_everywhere_ends_another_session_of_that_user(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    editor = sign_in(TestClient(client.app), team.emails[Role.EDITOR])
    assert editor.get("/", follow_redirects=False).status_code == 200
    owner = signed_in(Role.OWNER)
    settings = owner.get("/settings").text
    editor_id = user_id_of(settings, team.emails[Role.EDITOR])
    answer = owner.post(
        f"/settings/users/{editor_id}/sign-out",
        data={"csrf_token": csrf_of(owner, "/settings")},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    ended = editor.get("/", follow_redirects=False)
    assert ended.status_code == 303
    assert ended.headers["location"].startswith("/sign-in")
    assert owner.get("/", follow_redirects=False).status_code == 200  # the owner stays in


def test_a_reset_password_is_shown_once_and_the_old_one_stops_working(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    owner = signed_in(Role.OWNER)
    viewer_id = user_id_of(owner.get("/settings").text, team.emails[Role.VIEWER])
    reset = owner.post(
        f"/settings/users/{viewer_id}/password", data={"csrf_token": csrf_of(owner, "/settings")}
    )
    assert reset.status_code == 200
    password = shown_secret(reset.text)
    assert reset.headers["cache-control"] == "no-store"
    sign_in(TestClient(client.app), team.emails[Role.VIEWER], password)
    with pytest.raises(AssertionError):  # the old password is refused
        sign_in(TestClient(client.app), team.emails[Role.VIEWER], PASSWORD)
    assert password not in owner.get("/settings").text


def test_the_only_owner_cannot_be_made_an_editor_or_disabled(
    team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    owner = signed_in(Role.OWNER)
    owner_id = user_id_of(owner.get("/settings").text, team.emails[Role.OWNER])
    demoted = owner.post(
        f"/settings/users/{owner_id}/role",
        data={"csrf_token": csrf_of(owner, "/settings"), "role": "editor"},
    )
    assert demoted.status_code == 422
    assert "only owner" in demoted.text
    disabled = owner.post(
        f"/settings/users/{owner_id}/disable", data={"csrf_token": csrf_of(owner, "/settings")}
    )
    assert disabled.status_code == 422
    assert owner.get("/settings").status_code == 200  # still an owner, still signed in


def test_a_role_change_takes_effect_at_once(
    client: TestClient, team: Team, signed_in: Callable[[Role], TestClient]
) -> None:
    viewer = sign_in(TestClient(client.app), team.emails[Role.VIEWER])
    owner = signed_in(Role.OWNER)
    viewer_id = user_id_of(owner.get("/settings").text, team.emails[Role.VIEWER])
    changed = owner.post(
        f"/settings/users/{viewer_id}/role",
        data={"csrf_token": csrf_of(owner, "/settings"), "role": "owner"},
        follow_redirects=False,
    )
    assert changed.status_code == 303
    assert viewer.get("/settings").status_code == 200


@pytest.fixture
def relay_client(database_url: str, tmp_path: Path, database: db.Database) -> Iterator[TestClient]:
    """An app whose SMTP relay URL carries a user name and a password, and no DKIM."""
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        smtp_url="smtp://mailer:hunter2-relay-password@relay.example.net:587?starttls=require",
        public_url="http://localhost:8000",
        from_email="news@example.com",
    )
    with TestClient(create_app(settings)) as client:
        yield client
    close_pipeline()


def test_the_sender_settings_say_what_is_missing_and_never_the_smtp_password(
    relay_client: TestClient, team: Team
) -> None:
    owner = sign_in(relay_client, team.emails[Role.OWNER])
    page = owner.get("/settings").text
    facts = re.search(r'<dl class="facts" id="sender-settings">(.*?)</dl>', page, re.S)
    assert facts is not None
    assert "relay.example.net:587" in facts[1]
    assert "no DKIM" in facts[1]
    assert "news@example.com" in facts[1]
    assert "hunter2-relay-password" not in page
    assert "mailer" not in page
    problems = re.search(r'<div class="notice warn" id="sender-problems">(.*?)</div>', page, re.S)
    assert problems is not None
    assert "No DKIM" in problems[1]
    assert "not https" in problems[1]
    assert "localhost" in problems[1]
    assert "List-Unsubscribe" in problems[1]
    assert "outbox" not in problems[1]  # it sends through a relay


def test_an_owner_cannot_touch_the_users_or_keys_of_another_account(
    client: TestClient, database: db.Database, signed_in: Callable[[Role], TestClient]
) -> None:
    other = make_team(database)
    other_owner = sign_in(TestClient(client.app), other.emails[Role.OWNER])
    other_editor_id = user_id_of(other_owner.get("/settings").text, other.emails[Role.EDITOR])
    other_prefix = "_".join(other.api_key.split("_")[:2])
    owner = signed_in(Role.OWNER)
    page = owner.get("/settings").text
    assert other.emails[Role.EDITOR] not in page
    assert other_prefix not in page
    token = csrf_of(owner, "/settings")
    for action in ("disable", "password", "sign-out", "role"):
        answer = owner.post(
            f"/settings/users/{other_editor_id}/{action}",
            data={"csrf_token": token, "role": "viewer"},
        )
        assert answer.status_code == 404, action
        assert "no user" in answer.text
    revoked = owner.post(f"/settings/keys/{other_prefix}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 404
    lists = client.get(
        "/v1/marketing/subscription_lists",
        headers={"authorization": f"Token token={other.api_key}"},
    )
    assert lists.status_code == 200
    assert other_owner.get("/settings").status_code == 200


def test_the_audit_log_is_paged_from_newest_to_oldest(
    signed_in: Callable[[Role], TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_pages, "AUDIT_EVENTS_PER_PAGE", 2)
    owner = signed_in(Role.OWNER)
    for _ in range(3):
        owner.post("/settings/keys", data={"csrf_token": csrf_of(owner, "/settings")})
    first = owner.get("/settings/audit").text
    assert first.count("POST /settings/keys") == 2
    older = re.search(r'href="(/settings/audit\?before=\d+)">Older', first)
    assert older is not None
    second = owner.get(older[1]).text
    assert second.count("POST /settings/keys") == 1
    assert "Older</a>" not in second
