"""The mailings pages in-process: saving through the form with the API's rules, the sandboxed
preview rendered as a send renders it, template errors with their line, escaping, test emails
to a real SMTP server, the confirmation of who a send reaches, schedules and roles."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.audit.models import AuditEvent
from dripstone.config import Settings
from dripstone.delivery import audience
from dripstone.delivery.pipeline import close_pipeline
from dripstone.jobs.ticker import tick
from dripstone.users.models import Role
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer, smtp_server
from tests.mailings.conftest import smtp_settings
from tests.web.conftest import Team, csrf_of

__all__ = ["smtp_server"]

SignedIn = Callable[[Role], TestClient]
HTML = (
    "<html><body><p>Hello {{ first_name }}!</p>"
    '<p><a href="https://shop.example.com/sale">Sale</a></p></body></html>'
)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Settings]:
    yield smtp_settings(database_url, tmp_path, smtp_server)
    close_pipeline()


@pytest.fixture
def team_api(client: TestClient, team: Team) -> Api:
    """The team's own account through the API, to set up data as a user would."""
    return Api(client, team.account, team.api_key, "/v1/marketing")


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def make_list(api: Api, name: str, rows: list[dict[str, Any]]) -> str:
    list_id = str(
        ok(api.post("/subscription_lists", {"subscription_list": {"name": name}}))["data"]["id"]
    )
    ok(api.post("/subscribers_bulk_create", {"subscription_list_id": list_id, "subscribers": rows}))
    return list_id


def make_mailing(api: Api, subject: str = "Hello", html_part: str = HTML) -> str:
    body = {"campaign_mailing": {"subject": subject, "html_part": html_part}}
    return str(ok(api.post("/campaign_mailings", body))["data"]["id"])


def mailings(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(api.get("/campaign_mailings"))["data"]
    return found


def sends(api: Api) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(api.get("/campaign_mailing_sends"))["data"]
    return found


def subscriber_id(api: Api, address: str) -> str:
    found = ok(api.get("/subscribers", params={"search": address.split("@")[0]}))["data"]
    return str(next(s["id"] for s in found if s["attributes"]["email"] == address))


def form(client: TestClient, **fields: str) -> dict[str, str]:
    values = {"subject": "", "from_name": "", "from": "", "html_part": "", "text_part": ""}
    return {"csrf_token": csrf_of(client, "/mailings"), **values, **fields}


def test_a_mailing_created_through_the_form_is_the_one_the_api_reads(
    signed_in: SignedIn, team_api: Api
) -> None:
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        "/mailings/new",
        data=form(editor, subject="Spring sale", from_name="Shop", html_part=HTML),
        follow_redirects=False,
    )
    assert answer.status_code == 303
    mailing_id = answer.headers["location"].split("/")[2].split("?")[0]
    saved = ok(team_api.get(f"/campaign_mailings/{mailing_id}"))["data"]["attributes"]
    assert (saved["subject"], saved["from_name"]) == ("Spring sale", "Shop")
    assert "Hello {{ first_name }}!" in saved["html_part"]
    page = editor.get(answer.headers["location"])
    assert "Mailing created." in page.text
    assert "Spring sale" in page.text


def test_a_bad_from_address_is_shown_next_to_the_field_and_nothing_is_saved(
    signed_in: SignedIn, team_api: Api
) -> None:
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        "/mailings/new", data=form(editor, subject="Typed subject", **{"from": "not-an-address"})
    )
    assert answer.status_code == 422
    error = re.search(r'<p class="field-error" id="f-from-error">([^<]+)</p>', answer.text)
    assert error is not None
    assert "email" in error[1].lower()
    assert 'aria-describedby="f-from-error"' in answer.text
    assert 'value="Typed subject"' in answer.text
    assert 'value="not-an-address"' in answer.text
    assert mailings(team_api) == []


def test_a_taken_subject_and_a_template_error_are_both_shown_at_their_fields(
    signed_in: SignedIn, team_api: Api
) -> None:
    make_mailing(team_api, "Taken")
    editor = signed_in(Role.EDITOR)
    broken = "<p>one</p>\n<p>two</p>\n<p>{% if first_name %}Hi</p>\n"
    answer = editor.post("/mailings/new", data=form(editor, subject="Taken", html_part=broken))
    assert answer.status_code == 422
    assert re.search(r'id="f-subject-error">[^<]*already has the subject', answer.text)
    error = re.search(r'id="f-html_part-error">([^<]+)<', answer.text)
    assert error is not None, answer.text
    assert "html_part line 3" in html.unescape(error[1])
    assert len(mailings(team_api)) == 1


def test_the_preview_fills_merge_tags_for_the_chosen_subscriber_and_tracks_links(
    signed_in: SignedIn, team_api: Api
) -> None:
    make_list(
        team_api,
        "News",
        [{"email": "ann@example.com", "first_name": "Ann"}, {"email": "bo@example.com"}],
    )
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        "/mailings/preview",
        data={
            "csrf_token": csrf_of(editor, "/mailings/new"),
            "subject": "For {{ first_name }}",
            "html_part": HTML,
            "preview_subscriber": "ann@example.com",
        },
    )
    assert answer.status_code == 200
    assert "Hello Ann!" in answer.text
    assert "Subject:</strong> For Ann" in answer.text
    links = re.findall(r'href="([^"]+)"', answer.text)
    assert any(link.startswith("https://mail.example.com/t/c/") for link in links), links
    assert "https://shop.example.com/sale" not in links
    # The unsubscribe footer a save adds is in the preview too.
    assert "unsubscribe" in answer.text.lower()


def test_the_preview_is_sandboxed_and_cannot_be_framed_by_other_sites(
    signed_in: SignedIn,
) -> None:
    editor = signed_in(Role.VIEWER)
    answer = editor.post(
        "/mailings/preview",
        data={
            "csrf_token": csrf_of(editor, "/mailings"),
            "subject": "x",
            "html_part": "<p>hi</p><script>alert(1)</script>",
            "preview_email": "someone@example.org",
        },
    )
    assert answer.status_code == 200
    policy = answer.headers["content-security-policy"]
    assert policy.startswith("sandbox;")
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "script-src" not in policy
    assert answer.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_preview_shows_a_template_error_with_its_line(signed_in: SignedIn) -> None:
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        "/mailings/preview",
        data={
            "csrf_token": csrf_of(editor, "/mailings"),
            "subject": "Hi",
            "html_part": "<p>fine</p>\n<p>{{ first_name }</p>\n",
        },
    )
    assert answer.status_code == 200
    error = re.search(r'<li class="template-error">([^<]+)</li>', answer.text)
    assert error is not None
    assert html.unescape(error[1]).startswith("html_part line 2:")


def test_the_preview_warns_of_an_unknown_merge_tag_at_its_line(signed_in: SignedIn) -> None:
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        "/mailings/preview",
        data={
            "csrf_token": csrf_of(editor, "/mailings"),
            "subject": "Hi",
            "html_part": "<p>a</p>\n<p>{{ frist_name }}</p>",
        },
    )
    assert "html_part line 2: 'frist_name' is not a merge tag" in html.unescape(answer.text)


def test_previews_are_not_recorded_as_changes(signed_in: SignedIn, database: db.Database) -> None:
    editor = signed_in(Role.EDITOR)
    editor.post(
        "/mailings/preview",
        data={"csrf_token": csrf_of(editor, "/mailings"), "subject": "Hi", "html_part": "<p/>"},
    )
    with database.read_sessions() as session:
        actions = session.scalars(select(AuditEvent.action)).all()
    assert "POST /mailings/preview" not in actions


def test_a_subject_with_markup_is_escaped_on_the_list_page(
    signed_in: SignedIn, team_api: Api
) -> None:
    make_mailing(team_api, "<img src=x onerror=alert(1)>")
    page = signed_in(Role.VIEWER).get("/mailings")
    assert page.status_code == 200
    assert "<img src=x onerror=alert(1)>" not in page.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page.text


def test_the_list_pages_by_keyset_newest_first(signed_in: SignedIn, team_api: Api) -> None:
    for number in range(52):
        make_mailing(team_api, f"Mailing {number:02}")
    viewer = signed_in(Role.VIEWER)
    first = viewer.get("/mailings")
    assert "Mailing 51" in first.text
    assert "Mailing 02" in first.text
    assert "Mailing 01" not in first.text
    older = re.search(r'href="(/mailings\?before=[^"]+)"', first.text)
    assert older is not None
    second = viewer.get(html.unescape(older[1]))
    assert "Mailing 01" in second.text
    assert "Mailing 00" in second.text
    assert "Mailing 02" not in second.text


def test_a_test_email_arrives_at_the_smtp_server(
    signed_in: SignedIn, team_api: Api, smtp_server: SmtpTestServer, database: db.Database
) -> None:
    mailing_id = make_mailing(team_api, "Tested")
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        f"/mailings/{mailing_id}/test",
        data={
            "csrf_token": csrf_of(editor, f"/mailings/{mailing_id}"),
            "to_email": "qa@example.org",
        },
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "Test email queued" in editor.get(answer.headers["location"]).text
    tick(database)
    received = [m for m in smtp_server.messages if m.rcpt_tos == ["qa@example.org"]]
    assert len(received) == 1
    assert b"[Test] Tested" in received[0].data


def test_a_test_email_to_a_bad_address_is_refused_next_to_the_field(
    signed_in: SignedIn, team_api: Api, smtp_server: SmtpTestServer, database: db.Database
) -> None:
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    answer = editor.post(
        f"/mailings/{mailing_id}/test",
        data={"csrf_token": csrf_of(editor, f"/mailings/{mailing_id}"), "to_email": "nobody@"},
    )
    assert answer.status_code == 422
    assert 'id="f-to_email-error"' in answer.text
    assert 'value="nobody@"' in answer.text
    tick(database)
    assert smtp_server.messages == []


def _send_form(client: TestClient, mailing_id: str, list_id: str, **fields: str) -> dict[str, str]:
    token = csrf_of(client, f"/mailings/{mailing_id}")
    to = f"list:{list_id}" if list_id else ""
    return {"csrf_token": token, "to": to, "when": "now", **fields}


def test_the_confirmation_states_how_many_will_receive_it_and_only_confirming_sends(
    signed_in: SignedIn, team_api: Api
) -> None:
    list_id = make_list(
        team_api,
        "Customers",
        [{"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "c@example.com"}],
    )
    opted_out = subscriber_id(team_api, "c@example.com")
    ok(team_api.post("/subscriptions/unsubscribe", {"subscriber_ids": [opted_out]}))
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    step = editor.post(f"/mailings/{mailing_id}/send", data=_send_form(editor, mailing_id, list_id))
    assert step.status_code == 200
    assert re.search(r'id="audience"[^>]*>2 subscribers<', step.text), step.text
    assert sends(team_api) == []
    confirmed = editor.post(
        f"/mailings/{mailing_id}/send",
        data=_send_form(editor, mailing_id, list_id, confirm="yes"),
        follow_redirects=False,
    )
    assert confirmed.status_code == 303
    started = sends(team_api)
    assert len(started) == 1
    assert confirmed.headers["location"] == f"/sends/{started[0]['id']}"


def test_the_confirmation_and_the_list_count_follow_bounces_unsubscribes_and_deletions(
    signed_in: SignedIn, team_api: Api, team: Team, database: db.Database
) -> None:
    people = [{"email": f"{name}@example.com"} for name in "abcde"]
    list_id = make_list(team_api, "Customers", people)
    with database.transaction() as session:
        account_id = session.scalar(select(Account.id).where(Account.username == team.account))
        assert account_id is not None
        audience.suppress(
            session.connection(), [audience.Suppressed(account_id, "d@example.com", "550 gone")]
        )
    b = subscriber_id(team_api, "b@example.com")
    body = {"subscriber_ids": [b], "subscription_list_ids": [list_id]}
    ok(team_api.post("/subscriptions/unsubscribe", body))
    e = subscriber_id(team_api, "e@example.com")
    ok(team_api.request("DELETE", "/subscribers_bulk_delete", params={"subscriber_ids": e}))
    editor = signed_in(Role.EDITOR)
    # On the list: a, c and d (d bounced but stays a member); a send reaches a and c.
    assert editor.get(f"/lists/{list_id}/count").text == "3"
    mailing_id = make_mailing(team_api)
    step = editor.post(f"/mailings/{mailing_id}/send", data=_send_form(editor, mailing_id, list_id))
    assert re.search(r'id="audience"[^>]*>2 subscribers<', step.text), step.text


def test_a_send_needs_a_list_and_a_future_time(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock
) -> None:
    list_id = make_list(team_api, "News", [{"email": "a@example.com"}])
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    no_list = editor.post(f"/mailings/{mailing_id}/send", data=_send_form(editor, mailing_id, ""))
    assert no_list.status_code == 422
    assert 'id="f-to-error"' in no_list.text
    past = (clock.now() - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    late = editor.post(
        f"/mailings/{mailing_id}/send",
        data=_send_form(editor, mailing_id, list_id, when="later", send_at=past, confirm="yes"),
    )
    assert late.status_code == 422
    assert re.search(r'id="f-send_at-error">must be in the future<', late.text)
    assert f'value="{past}"' in late.text
    assert sends(team_api) == []


def test_a_scheduled_send_is_confirmed_in_the_account_zone_and_can_be_cancelled(
    signed_in: SignedIn, team_api: Api, manual_clock: clock.ManualClock
) -> None:
    list_id = make_list(team_api, "News", [{"email": "a@example.com"}])
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    at = (clock.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    fields = {"when": "later", "send_at": at}
    step = editor.post(
        f"/mailings/{mailing_id}/send", data=_send_form(editor, mailing_id, list_id, **fields)
    )
    assert "1 subscriber<" in step.text
    assert "(UTC)" in step.text
    assert "Schedule the send" in step.text
    editor.post(
        f"/mailings/{mailing_id}/send",
        data=_send_form(editor, mailing_id, list_id, confirm="yes", **fields),
        follow_redirects=False,
    )
    (scheduled,) = sends(team_api)
    assert scheduled["attributes"]["state"] == "scheduled"
    jid = scheduled["attributes"]["jid"]
    page = editor.get(f"/mailings/{mailing_id}")
    assert f'name="jid" value="{jid}"' in page.text
    token = csrf_of(editor, f"/mailings/{mailing_id}")
    asked = editor.post(f"/mailings/{mailing_id}/cancel", data={"csrf_token": token, "jid": jid})
    assert "Nothing will be sent" in asked.text
    assert sends(team_api)[0]["attributes"]["state"] == "scheduled"
    done = editor.post(
        f"/mailings/{mailing_id}/cancel",
        data={"csrf_token": token, "jid": jid, "confirm": "yes"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert sends(team_api)[0]["attributes"]["state"] == "cancelled"
    assert "was cancelled" in editor.get(done.headers["location"]).text


def test_a_viewer_reads_the_editor_but_a_forged_send_is_refused_and_nothing_is_sent(
    signed_in: SignedIn, team_api: Api, database: db.Database
) -> None:
    list_id = make_list(team_api, "News", [{"email": "a@example.com"}])
    mailing_id = make_mailing(team_api, "Read me")
    viewer = signed_in(Role.VIEWER)
    page = viewer.get(f"/mailings/{mailing_id}")
    assert page.status_code == 200
    assert "Read me" in page.text
    assert "readonly" in page.text
    assert "Review the send" not in page.text
    assert ">Save<" not in page.text
    forged = viewer.post(
        f"/mailings/{mailing_id}/send", data=_send_form(viewer, mailing_id, list_id, confirm="yes")
    )
    assert forged.status_code == 403
    assert (
        viewer.post(
            "/mailings/new", data=form(viewer, subject="Sneaky", html_part="<p>x</p>")
        ).status_code
        == 403
    )
    assert sends(team_api) == []
    assert [m["attributes"]["subject"] for m in mailings(team_api)] == ["Read me"]
    with database.read_sessions() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.status == 403)).all()
    assert {event.action for event in refused} >= {"POST /mailings/{mailing_id}/send"}


def test_a_segment_is_confirmed_with_its_own_count(signed_in: SignedIn, team_api: Api) -> None:
    list_id = make_list(
        team_api,
        "Everyone",
        [
            {"email": "ann@example.com", "first_name": "Ann"},
            {"email": "bo@example.com", "first_name": "Bo"},
            {"email": "cy@example.com"},
        ],
    )
    body = {
        "dynamic_list": {
            "name": "Named",
            "subscription_list_id": list_id,
            "filters": [[{"field": "first_name", "op": "is_not_empty", "terms": []}]],
        }
    }
    segment_id = ok(team_api.post("/dynamic_lists", body))["data"]["id"]
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    assert f'value="segment:{segment_id}"' in editor.get(f"/mailings/{mailing_id}").text
    fields = _send_form(editor, mailing_id, "")
    step = editor.post(
        f"/mailings/{mailing_id}/send", data={**fields, "to": f"segment:{segment_id}"}
    )
    assert re.search(r'id="audience"[^>]*>2 subscribers<', step.text), step.text
    assert "in the segment <strong>Named</strong>" in step.text


def test_html_left_open_is_a_warning_with_its_line_in_the_preview_and_after_saving(
    signed_in: SignedIn,
) -> None:
    editor = signed_in(Role.EDITOR)
    source = "<div>\n<p>Hi\n<b>bold</div>\n"
    preview = editor.post(
        "/mailings/preview",
        data={"csrf_token": csrf_of(editor, "/mailings"), "subject": "Hi", "html_part": source},
    )
    expected = "html_part line 3: <b> (opened on line 3) is not closed before </div>"
    assert expected in html.unescape(preview.text)
    saved = editor.post("/mailings/new", data=form(editor, subject="Open", html_part=source))
    assert saved.status_code == 200
    assert "The saved mailing renders, but check these" in saved.text
    assert expected in html.unescape(saved.text)


def test_a_time_typed_for_a_schedule_is_read_in_the_account_zone(
    signed_in: SignedIn, team_api: Api, database: db.Database, team: Team
) -> None:
    with database.transaction() as session:
        account = session.scalars(select(Account).where(Account.username == team.account)).one()
        account.timezone = "Europe/Paris"
    list_id = make_list(team_api, "News", [{"email": "a@example.com"}])
    mailing_id = make_mailing(team_api)
    editor = signed_in(Role.EDITOR)
    assert "Date and time (Europe/Paris)" in editor.get(f"/mailings/{mailing_id}").text
    fields = {"when": "later", "send_at": "2099-01-15T10:00", "confirm": "yes"}
    editor.post(
        f"/mailings/{mailing_id}/send",
        data=_send_form(editor, mailing_id, list_id, **fields),
        follow_redirects=False,
    )
    (scheduled,) = sends(team_api)
    assert scheduled["attributes"]["send_at"].startswith("2099-01-15T09:00:00")
