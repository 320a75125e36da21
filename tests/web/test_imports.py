"""The import pages (upload, mapping, progress, rejected rows) and the subscribers export."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dripstone import clock, db
from dripstone.accounts.models import Account
from dripstone.app import create_app
from dripstone.config import load_settings
from dripstone.jobs.models import Job
from dripstone.jobs.queue import run_tasks_inline
from dripstone.jobs.service import create_job
from dripstone.subscribers import importing
from dripstone.subscribers.models import Subscriber
from dripstone.users.models import Role
from tests.conftest import SECRET
from tests.web.conftest import Team, csrf_of, make_team, sign_in

JOB_LINK = re.compile(r"/imports/jobs/([0-9a-f-]{36})$")
PEOPLE = (
    "E-mail,Given name,Surname,Plan\n"
    "ann@example.com,Ann,Lee,gold\n"
    "bob@example.com,Bob,Ray,silver\n"
    "not-an-address,Carl,Day,bronze\n"
)


def _api(client: TestClient, team: Team, method: str, path: str, **kwargs: Any) -> Any:
    headers = {"authorization": f"Token token={team.api_key}"}
    answer = client.request(method, "/v1/marketing" + path, headers=headers, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json()["data"]


def _subscribers(client: TestClient, team: Team) -> dict[str, dict[str, Any]]:
    found = _api(client, team, "GET", "/subscribers", params={"items": 1000})
    return {s["attributes"]["email"]: s for s in found}


def _upload(client: TestClient, content: str | bytes, name: str = "people.csv") -> httpx2.Response:
    data = content.encode() if isinstance(content, str) else content
    return client.post(
        "/imports",
        data={"csrf_token": csrf_of(client, "/imports")},
        files={"file": (name, data, "text/csv")},
        follow_redirects=False,
    )


def _mapping_path(client: TestClient, content: str | bytes) -> str:
    answer = _upload(client, content)
    assert answer.status_code == 303, answer.text
    return str(answer.headers["location"])


def _start(client: TestClient, path: str, **fields: str) -> httpx2.Response:
    form = {"csrf_token": csrf_of(client, path), **fields}
    return client.post(path, data=form, follow_redirects=False)


def _selected(html: str, name: str) -> str | None:
    """The value chosen in the select `name` of a page."""
    options = re.search(rf'<select [^>]*name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert options is not None, name
    chosen = re.search(r'<option value="([^"]*)" selected>', options[1])
    return chosen[1] if chosen else None


def _job_count(database: db.Database) -> int:
    with database.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(Job)) or 0


def _subscriber_count(database: db.Database) -> int:
    with database.read_sessions() as session:
        return session.scalar(select(func.count()).select_from(Subscriber)) or 0


def test_upload_map_and_start_imports_names_and_a_custom_field_into_a_list(
    signed_in: Callable[[Role], TestClient], team: Team
) -> None:
    client = signed_in(Role.EDITOR)
    members = _api(client, team, "POST", "/subscription_lists", json={"name": "Members"})["id"]
    path = _mapping_path(client, PEOPLE)

    page = client.get(path)
    assert page.status_code == 200
    # Pre-filled from the header names, with the first rows shown.
    assert _selected(page.text, "column-0") == "email"
    assert _selected(page.text, "column-1") == "first_name"
    assert _selected(page.text, "column-2") == "last_name"
    assert 'name="custom-3" type="text" maxlength="255" value="Plan"' in page.text
    assert "<td>ann@example.com</td>" in page.text
    assert "<td>not-an-address</td>" in page.text
    assert "Members" in page.text

    answer = _start(
        client,
        path,
        **{"column-0": "email", "column-1": "first_name", "column-2": "last_name"},
        **{"column-3": "new", "custom-3": "Tier", "list": members, "existing": "skip"},
    )
    assert answer.status_code == 303, answer.text
    progress = client.get(answer.headers["location"])
    assert progress.status_code == 200
    assert "Import finished" in progress.text
    assert re.search(r'data-count="added">2<', progress.text)
    assert re.search(r'data-count="rejected">1<', progress.text)
    assert "hx-trigger" not in progress.text  # finished: the page stops polling

    found = _subscribers(client, team)
    assert set(found) == {"ann@example.com", "bob@example.com"}
    ann = _api(client, team, "GET", f"/subscribers/{found['ann@example.com']['id']}")
    assert (ann["attributes"]["first_name"], ann["attributes"]["last_name"]) == ("Ann", "Lee")
    fields = ann["attributes"]["custom_fields"]
    custom = {f["custom_field_name"]: f["custom_field_value"] for f in fields}
    assert custom == {"Tier": "gold"}
    on_members = _api(client, team, "GET", "/subscribers", params={"subscription_list_id": members})
    assert {s["attributes"]["email"] for s in on_members} == set(found)

    # The same upload cannot be started twice.
    assert _start(client, path, **{"column-0": "email"}).status_code == 404


def test_the_rejected_rows_download_lists_each_bad_row_with_its_reason(
    signed_in: Callable[[Role], TestClient],
) -> None:
    client = signed_in(Role.EDITOR)
    path = _mapping_path(client, PEOPLE)
    answer = _start(client, path, **{"column-0": "email", "column-3": "", "existing": "skip"})
    jid = JOB_LINK.search(answer.headers["location"])
    assert jid is not None
    progress = client.get(f"/imports/jobs/{jid[1]}/progress")
    assert f'href="/imports/jobs/{jid[1]}/rejected.csv"' in progress.text
    assert f'href="/imports/jobs/{jid[1]}"' in client.get("/imports").text  # latest imports

    download = client.get(f"/imports/jobs/{jid[1]}/rejected.csv")
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["line", "reason", "E-mail", "Given name", "Surname", "Plan"]
    assert len(rows) == 2
    assert rows[1][0] == "4"
    assert rows[1][1].startswith("email: not a valid email address")
    assert rows[1][2:] == ["not-an-address", "Carl", "Day", "bronze"]


def test_a_file_that_is_not_utf8_is_refused_with_a_message_and_nothing_is_imported(
    signed_in: Callable[[Role], TestClient], database: db.Database
) -> None:
    client = signed_in(Role.EDITOR)
    answer = _upload(client, "email,first_name\nzoe@example.com,Zoë\n".encode("latin-1"))
    assert answer.status_code == 422
    assert "Not UTF-8 text" in answer.text
    assert "save the file as UTF-8 CSV" in answer.text
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0


def test_a_malformed_line_is_refused_on_upload_naming_the_line(
    signed_in: Callable[[Role], TestClient], database: db.Database
) -> None:
    client = signed_in(Role.EDITOR)
    answer = _upload(client, "email,first_name\nann@example.com,Ann\nbob@example.com,Bob,extra\n")
    assert answer.status_code == 422
    assert "Line 3 is malformed: 3 cells where the header has 2" in answer.text
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0


def test_without_an_email_column_the_mapping_page_says_so_and_nothing_is_imported(
    signed_in: Callable[[Role], TestClient], database: db.Database
) -> None:
    client = signed_in(Role.EDITOR)
    path = _mapping_path(client, "name,city\nAnn,Oslo\n")
    page = client.get(path)
    assert "No column feeds the email address yet" in page.text

    answer = _start(client, path, **{"column-0": "first_name", "column-1": "", "existing": "skip"})
    assert answer.status_code == 422
    assert "No email column: name a column &#39;email&#39; or map one to it" in answer.text
    # What was chosen is kept.
    assert _selected(answer.text, "column-0") == "first_name"
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0
    # The upload still waits for a better mapping.
    assert client.get(path).status_code == 200


def test_a_new_custom_field_without_a_name_is_refused_next_to_it(
    signed_in: Callable[[Role], TestClient], database: db.Database
) -> None:
    client = signed_in(Role.EDITOR)
    path = _mapping_path(client, PEOPLE)
    answer = _start(client, path, **{"column-0": "email", "column-3": "new", "custom-3": " "})
    assert answer.status_code == 422
    assert 'id="f-custom-3-error">Name the new custom field' in answer.text
    long_name = {"column-0": "email", "column-3": "new", "custom-3": "x" * 300}
    too_long = _start(client, path, **long_name)
    assert too_long.status_code == 422
    refusal = "Column &#39;Plan&#39;: a custom field&#39;s name has 1 to 255 characters"
    assert refusal in too_long.text
    assert _job_count(database) == 0


def test_a_viewers_forged_upload_and_start_are_refused(
    signed_in: Callable[[Role], TestClient], database: db.Database
) -> None:
    editor = signed_in(Role.EDITOR)
    path = _mapping_path(editor, PEOPLE)
    viewer = signed_in(Role.VIEWER)
    token = csrf_of(viewer, "/")
    upload = viewer.post(
        "/imports",
        data={"csrf_token": token},
        files={"file": ("people.csv", PEOPLE.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert upload.status_code == 403
    start = viewer.post(path, data={"csrf_token": token, "column-0": "email"})
    assert start.status_code == 403
    assert viewer.get("/imports").status_code == 403
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0


def test_another_accounts_upload_and_import_job_are_not_found(
    signed_in: Callable[[Role], TestClient], database: db.Database, client: TestClient
) -> None:
    editor = signed_in(Role.EDITOR)
    path = _mapping_path(editor, PEOPLE)
    answer = _start(editor, path, **{"column-0": "email", "column-3": ""})
    jid = answer.headers["location"].rsplit("/", 1)[1]

    other = make_team(database)
    editor.cookies.clear()
    sign_in(editor, other.emails[Role.EDITOR])
    assert jid not in editor.get("/imports").text
    for address in (
        f"/imports/jobs/{jid}",
        f"/imports/jobs/{jid}/progress",
        f"/imports/jobs/{jid}/rejected.csv",
    ):
        assert editor.get(address).status_code == 404, address
    second = _mapping_path(editor, PEOPLE)
    editor.cookies.clear()
    sign_in(editor, make_team(database).emails[Role.EDITOR])
    assert editor.get(second).status_code == 404
    assert _start(editor, second, **{"column-0": "email"}).status_code == 404


def test_export_of_a_list_has_its_rows_and_neutralises_formulas(
    signed_in: Callable[[Role], TestClient], team: Team
) -> None:
    client = signed_in(Role.VIEWER)
    members = _api(client, team, "POST", "/subscription_lists", json={"name": "Members"})["id"]
    _api(
        client,
        team,
        "POST",
        "/subscribers",
        json={
            "subscriber": {
                "email": "eve@example.com",
                "first_name": "=cmd()",
                "last_name": "@SUM(A1)",
                "custom_fields": [{"Plan": "+gold"}],
            },
            "subscription_list_id": members,
        },
    )
    _api(client, team, "POST", "/subscribers", json={"subscriber": {"email": "out@example.com"}})

    page = client.get("/exports")
    assert page.status_code == 200
    assert f"/exports/subscribers.csv?list={members}" in page.text
    answer = client.get("/exports/subscribers.csv", params={"list": members})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows == [
        ["email", "first_name", "last_name", "phone_number", "status", "Plan"],
        ["eve@example.com", "'=cmd()", "'@SUM(A1)", "", "subscribed", "'+gold"],
    ]

    everyone = client.get("/exports/subscribers.csv")
    assert sorted(r[0] for r in csv.reader(io.StringIO(everyone.text)))[:2] == [
        "email",
        "eve@example.com",
    ]
    assert "out@example.com" in everyone.text
    found = client.get("/exports/subscribers.csv", params={"search": "out"})
    assert [r[0] for r in csv.reader(io.StringIO(found.text))] == ["email", "out@example.com"]


def test_export_has_what_the_subscribers_page_shows_for_filter_rows_or_a_dynamic_list(
    signed_in: Callable[[Role], TestClient], team: Team
) -> None:
    client = signed_in(Role.VIEWER)
    for email, plan in (("ann@example.com", "gold"), ("bob@example.org", "free")):
        subscriber = {"email": email, "custom_fields": [{"plan": plan}]}
        _api(client, team, "POST", "/subscribers", json={"subscriber": subscriber})
    _api(client, team, "POST", "/subscribers", json={"subscriber": {"email": "cy@example.org"}})
    gold = {"field": "plan", "op": "is", "terms": "gold", "join": "and"}
    page = client.get("/subscribers", params=gold)
    link = re.search(r'<a href="(/exports/subscribers\.csv\?[^"]*)" download>', page.text)
    assert link is not None, page.text
    rows = list(csv.reader(io.StringIO(client.get(html.unescape(link.group(1))).text)))
    assert rows == [
        ["email", "first_name", "last_name", "phone_number", "status", "plan"],
        ["ann@example.com", "", "", "", "subscribed", "gold"],
    ]
    org = _api(
        client,
        team,
        "POST",
        "/dynamic_lists",
        json={"dynamic_list": {"name": "Org", "search": "org"}},
    )["id"]
    answer = client.get("/exports/subscribers.csv", params={"segment": org})
    assert sorted(r[0] for r in csv.reader(io.StringIO(answer.text))) == [
        "bob@example.org",
        "cy@example.org",
        "email",
    ]


def test_export_refuses_a_bad_filter_row_and_another_accounts_list(
    signed_in: Callable[[Role], TestClient], database: db.Database, client: TestClient
) -> None:
    viewer = signed_in(Role.VIEWER)
    bad = {"field": "plan", "op": "matches_regex", "terms": "(", "join": "and"}
    refused = viewer.get("/exports/subscribers.csv", params=bad)
    assert refused.status_code == 422, refused.text
    assert viewer.get("/exports/subscribers.csv", params={"list": "nope"}).status_code == 422
    other = make_team(database)
    theirs = _api(viewer, other, "POST", "/subscription_lists", json={"name": "Theirs"})["id"]
    answer = viewer.get("/exports/subscribers.csv", params={"list": theirs})
    assert answer.status_code == 422
    assert "no list with this id in this account" in answer.text


@pytest.fixture
def small_limits(database_url: str, tmp_path: Path, database: db.Database) -> Iterator[TestClient]:
    """A dashboard whose bodies may hold 2 KiB, and its uploads 8 KiB."""
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        queue_url="memory://",
        secret_key=SECRET,
        max_body_bytes=2048,
        max_import_bytes=8192,
    )
    run_tasks_inline()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def _rows(size: int) -> str:
    lines = ["email,first_name"]
    n = 0
    while sum(len(line) + 1 for line in lines) < size:
        n += 1
        lines.append(f"person{n}@example.com,Person{n}")
    return "\n".join(lines) + "\n"


def test_uploads_may_be_larger_than_other_bodies_and_a_too_large_one_gets_a_page(
    small_limits: TestClient, team: Team, database: db.Database
) -> None:
    client = sign_in(small_limits, team.emails[Role.EDITOR])
    assert _upload(client, _rows(6000)).status_code == 303  # over 2 KiB, under 8 KiB

    answer = _upload(client, _rows(9000))
    assert answer.status_code == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert "The file is over the limit of 8,192 bytes; split it and try again." in answer.text
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0


def test_a_file_with_too_many_rows_is_refused_on_upload(
    signed_in: Callable[[Role], TestClient],
    database: db.Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importing, "MAX_IMPORT_ROWS", 2)
    client = signed_in(Role.EDITOR)
    answer = _upload(client, PEOPLE)
    assert answer.status_code == 422
    assert "More than 2 rows; split the file" in answer.text
    assert _job_count(database) == 0
    assert _subscriber_count(database) == 0


def test_the_progress_of_an_import_not_yet_done_keeps_polling_every_second(
    signed_in: Callable[[Role], TestClient], team: Team, database: db.Database
) -> None:
    client = signed_in(Role.VIEWER)
    with database.transaction() as session:
        owner = select(Account.id).where(Account.username == team.account)
        account_id = session.scalars(owner).one()
        later = clock.now() + timedelta(hours=1)  # not started before then: it stays queued
        job = create_job(session, account_id, importing.IMPORT_JOB, {}, total=10, not_before=later)
        jid = job.id
    fragment = client.get(f"/imports/jobs/{jid}/progress")
    assert fragment.status_code == 200
    assert "Waiting to start" in fragment.text
    assert f'hx-get="/imports/jobs/{jid}/progress" hx-trigger="every 1s"' in fragment.text
    assert "<!doctype html>" not in fragment.text  # the part alone, not a whole page
    assert "rejected.csv" not in fragment.text


def test_addresses_already_here_are_updated_when_asked_and_left_alone_otherwise(
    signed_in: Callable[[Role], TestClient], team: Team
) -> None:
    client = signed_in(Role.EDITOR)
    subscriber = {"email": "ann@example.com", "first_name": "Old", "last_name": "Name"}
    _api(client, team, "POST", "/subscribers", json={"subscriber": subscriber})
    mapping = {"column-0": "email", "column-1": "first_name", "column-2": "", "column-3": ""}

    kept = _start(client, _mapping_path(client, PEOPLE), **mapping, existing="skip")
    assert re.search(r'data-count="skipped">1<', client.get(kept.headers["location"]).text)
    assert _subscribers(client, team)["ann@example.com"]["attributes"]["first_name"] == "Old"

    updated = _start(client, _mapping_path(client, PEOPLE), **mapping, existing="update")
    page = client.get(updated.headers["location"]).text
    assert re.search(r'data-count="updated">2<', page)  # ann, and bob from the first import
    ann = _subscribers(client, team)["ann@example.com"]["attributes"]
    assert (ann["first_name"], ann["last_name"]) == ("Ann", "Name")
