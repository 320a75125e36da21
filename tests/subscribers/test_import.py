"""Importing subscribers from CSV: POST /subscribers_import, the job, the rejected rows."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dripstone import db
from dripstone.subscribers import importing
from dripstone.subscribers.models import CustomFieldValue
from tests.conftest import Api, make_account
from tests.processes import wait_until
from tests.subscribers.helpers import (
    add_list,
    add_subscriber,
    all_subscribers,
    assert_error,
    count_rows,
    detail,
    events,
    memberships,
    ok,
    subscriber_total,
)

GOOD_DUPLICATE_AND_BAD = (
    "Email,First_Name,last_name,phone_number,Plan\n"
    "ann@example.com,Ann,Lee,+14155550123,gold\n"
    "BOB@example.com,Bob,,,silver\n"
    "not-an-address,Carl,Day,,bronze\n"
    "ann@example.com,Annie,Twice,,\n"
    "dee@example.com,Dee,Fox,12345,\n"
    ",Nobody,Here,,\n"
    '"eve@example.com","=HYPERLINK(""http://evil"")",Gray,,"two\nlines"\n'
    "fay@example,Fay,Gil,,platinum\n"
)


def upload(api: Api, content: str | bytes, *, name: str = "people.csv", **fields: Any) -> Any:
    data = content.encode() if isinstance(content, str) else content
    form = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items()}
    return api.request(
        "POST", "/subscribers_import", files={"file": (name, data, "text/csv")}, data=form
    )


def import_csv(api: Api, content: str | bytes, **fields: Any) -> dict[str, Any]:
    """Import and return the finished job's attributes (jobs run inline in tests)."""
    jid = ok(upload(api, content, **fields))["jid"]
    job: dict[str, Any] = ok(api.get(f"/jobs/{jid}"))
    assert job["attributes"]["state"] == "succeeded", job
    return {"jid": jid, **job["attributes"]}


def rejected(api: Api, jid: str) -> list[list[str]]:
    response = api.get(f"/subscribers_import/{jid}/rejected")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


def by_email(api: Api) -> dict[str, dict[str, Any]]:
    return {s["attributes"]["email"]: s for s in all_subscribers(api)}


def custom_of(api: Api, subscriber_id: str) -> dict[str, str]:
    fields = detail(api, subscriber_id)["attributes"]["custom_fields"]
    return {f["custom_field_name"]: f["custom_field_value"] for f in fields}


def test_import_adds_good_rows_and_rejects_duplicate_and_bad_ones_with_reasons(
    api: Api, database: db.Database
) -> None:
    members = add_list(api, "Members")
    job = import_csv(api, GOOD_DUPLICATE_AND_BAD, subscription_list_id=members)
    assert job["counts"] == {"added": 3, "updated": 0, "skipped": 0, "rejected": 5}
    assert (job["total"], job["done"], job["failed"]) == (8, 3, 5)

    found = by_email(api)
    assert set(found) == {"ann@example.com", "bob@example.com", "eve@example.com"}
    ann = found["ann@example.com"]["attributes"]
    assert (ann["first_name"], ann["last_name"], ann["phone_number"]) == (
        "Ann",
        "Lee",
        "+14155550123",
    )
    assert found["bob@example.com"]["attributes"]["last_name"] == ""
    # Stored as given: formulas are neutralised where CSV is written out, not in the data.
    assert found["eve@example.com"]["attributes"]["first_name"] == '=HYPERLINK("http://evil")'
    assert custom_of(api, found["ann@example.com"]["id"]) == {"Plan": "gold"}
    assert custom_of(api, found["eve@example.com"]["id"]) == {"Plan": "two\nlines"}
    for email in found:
        assert memberships(api, found[email]["id"]) == {"All contacts": False, "Members": False}
    joined = sorted(e for e in events(database) if e[1] == "Members")
    assert joined == sorted((email, "Members") for email in found)

    rows = rejected(api, job["jid"])
    assert rows[0] == ["line", "reason", "Email", "First_Name", "last_name", "phone_number", "Plan"]
    reasons = {row[0]: (row[1], row[2:]) for row in rows[1:]}
    assert set(reasons) == {"4", "5", "6", "7", "10"}
    assert reasons["4"][0].startswith("email: not a valid email address")
    assert reasons["4"][1] == ["not-an-address", "Carl", "Day", "", "bronze"]
    assert reasons["5"][0] == "email: also on line 2"
    assert reasons["6"][0].startswith("phone_number: not an E.164 phone number")
    assert reasons["7"] == ("email: required", ["", "Nobody", "Here", "", ""])
    assert reasons["10"][1] == ["fay@example", "Fay", "Gil", "", "platinum"]


def test_rejected_rows_cannot_run_as_spreadsheet_formulas(api: Api) -> None:
    content = 'email,first_name,note\nbad@,"=1+2",+dial\n@bad,-minus,@at\n"no",\ttab,"\rcr"\n'
    job = import_csv(api, content)
    rows = rejected(api, job["jid"])
    assert [row[2:] for row in rows[1:]] == [
        ["bad@", "'=1+2", "'+dial"],
        ["'@bad", "'-minus", "'@at"],
        ["no", "'\ttab", "'\rcr"],
    ]


def test_existing_addresses_are_skipped_by_default_and_updated_on_request(api: Api) -> None:
    add_subscriber(api, "ann@example.com", first_name="Ann", last_name="Lee")
    content = (
        "email,first_name,last_name,plan\nANN@example.com,Annie,,gold\nbob@example.com,Bob,,\n"
    )

    skipped = import_csv(api, content)
    assert skipped["counts"] == {"added": 1, "updated": 0, "skipped": 1, "rejected": 0}
    ann = by_email(api)["ann@example.com"]
    assert (ann["attributes"]["first_name"], ann["attributes"]["last_name"]) == ("Ann", "Lee")
    assert custom_of(api, ann["id"]) == {}

    updated = import_csv(api, content, existing="update")
    assert updated["counts"] == {"added": 0, "updated": 2, "skipped": 0, "rejected": 0}
    ann = by_email(api)["ann@example.com"]
    # An empty cell leaves the value as it was.
    assert (ann["attributes"]["first_name"], ann["attributes"]["last_name"]) == ("Annie", "Lee")
    assert custom_of(api, ann["id"]) == {"plan": "gold"}


def test_mapping_names_which_column_feeds_which_field(api: Api) -> None:
    content = "E-mail,Given,Family,Ignored\nann@example.com,Ann,Lee,x\n"
    mapping = {"E-mail": "email", "Given": "first_name", "Family": "custom.surname", "Ignored": ""}
    job = import_csv(api, content, mapping=mapping)
    assert job["counts"]["added"] == 1
    ann = by_email(api)["ann@example.com"]
    assert ann["attributes"]["first_name"] == "Ann"
    assert ann["attributes"]["last_name"] == ""
    assert custom_of(api, ann["id"]) == {"surname": "Lee"}


def test_an_address_repeated_in_a_later_batch_is_rejected_as_a_duplicate(
    api: Api, database: db.Database
) -> None:
    # Tests run jobs in batches of 50 job rows: 1,000 import rows per batch.
    lines = [f"user{i}@example.com,First{i}" for i in range(1500)]
    lines.append("user3@example.com,Again")
    job = import_csv(api, "email,first_name\n" + "\n".join(lines) + "\n")
    assert job["counts"] == {"added": 1500, "updated": 0, "skipped": 0, "rejected": 1}
    assert subscriber_total(database) == 1500
    rows = rejected(api, job["jid"])
    assert rows[1:] == [["1502", "email: also on an earlier line", "user3@example.com", "Again"]]


def test_whole_file_problems_are_refused_and_nothing_is_imported(
    api: Api, database: db.Database
) -> None:
    refusals: list[tuple[bytes | str, str, dict[str, Any]]] = [
        ("email,name\nann@example.com,Ann\n".encode("utf-16"), "not UTF-8", {}),
        ("ann@example.com,Ann\nbob@example.com,Bob\n", "no email column", {}),
        ("name,city\nAnn,Oslo\n", "no email column", {}),
        ('email,name\nann@example.com,Ann\nbob@example.com,"Bo"b\n', "line 3 is malformed", {}),
        ("email,name\nann@example.com,Ann\nbob@example.com\n", "line 3 is malformed", {}),
        ('email,name\nann@example.com,"Ann\n', "malformed", {}),
        (b"email,name\nann@example.com,Ann\n\xff\xfe,x\n", "not UTF-8", {}),
        ("", "empty", {}),
    ]
    for content, message, fields in refusals:
        body = assert_error(upload(api, content, **fields), 422, field="file")
        assert message in body["error"], (content, body)
    body = assert_error(
        upload(api, "a,b\nann@example.com,x\n", mapping={"c": "email"}), 422, field="mapping"
    )
    assert "no column 'c'" in body["error"]
    body = assert_error(
        upload(api, "a,b\nann@example.com,x\n", mapping={"a": "emails"}), 422, field="mapping"
    )
    assert_error(upload(api, "email\nann@example.com\n", mapping="{"), 422, field="mapping")
    assert_error(
        upload(
            api,
            "email\nann@example.com\n",
            subscription_list_id="00000000-0000-4000-8000-000000000000",
        ),
        422,
        field="subscription_list_id",
    )
    assert_error(upload(api, "email\nann@example.com\n", existing="merge"), 422, field="existing")
    assert subscriber_total(database) == 0
    assert count_rows(database, CustomFieldValue) == 0


def test_more_than_a_million_rows_are_refused_before_any_is_written(
    api: Api, database: db.Database
) -> None:
    content = "email\n" + "a@example.com\n" * 1_000_001
    body = assert_error(upload(api, content), 422, field="file")
    assert "more than 1,000,000 rows" in body["error"]
    assert subscriber_total(database) == 0


def test_the_uploaded_copy_is_removed_once_imported(api: Api, tmp_path: Path) -> None:
    import_csv(api, "email\nann@example.com\n")
    imports = tmp_path / "data" / "imports"
    assert [p.name for p in imports.iterdir() if p.name.startswith("upload-")] == []


def test_rejected_rows_of_another_account_or_kind_of_job_are_not_found(
    api: Api, other_api: Api
) -> None:
    job = import_csv(api, "email\nbad\n")
    assert_error(other_api.get(f"/subscribers_import/{job['jid']}/rejected"), 404, field="jid")
    assert_error(api.get("/subscribers_import/nope/rejected"), 404, field="jid")


def _places(tmp_path: Path) -> tuple[importing._Where, importing._Where]:
    source = tmp_path / "people.csv"
    rows = [f"p{n}@example.com,First{n},+1415555{n:04d},gold" for n in range(30)]
    source.write_text("email,first_name,phone_number,plan\n" + "\n".join(rows) + "\n")
    columns = ("email", "first_name", "phone_number", "custom.plan")
    first = importing._Where(
        str(source), len("email,first_name,phone_number,plan\n"), 1, columns, 10
    )
    after = importing._read_at(first)
    return first, first._replace(offset=after.cursor, line=after.next_line)


def test_a_batch_read_ahead_in_the_reader_process_is_the_batch_read_here(tmp_path: Path) -> None:
    _first, second = _places(tmp_path)
    importing._read_ahead("job-1", second)
    place, future = importing._ahead["job-1"]
    assert place == second
    ahead = future.result(timeout=60)
    assert ahead == importing._read_at(second)
    assert importing._read("job-1", second) == ahead
    assert [row.email for row in ahead.good] == [f"p{n}@example.com" for n in range(10, 20)]
    assert ahead.good[0].custom == {"plan": "gold"}
    assert ahead.good[0].phone_number == "+14155550010"


def test_a_batch_read_ahead_for_another_place_is_not_taken(tmp_path: Path) -> None:
    # A batch whose transaction failed runs again from where it began, not from where the
    # batch after it, read ahead, begins.
    first, second = _places(tmp_path)
    importing._read_ahead("job-2", second)
    again = importing._read("job-2", first)
    assert [row.email for row in again.good] == [f"p{n}@example.com" for n in range(10)]


def send_upload(api: Api, content: str) -> Any:
    return api.request(
        "POST",
        "/subscribers_uploads",
        files={"file": ("people.csv", content.encode(), "text/csv")},
    )


def test_a_file_uploaded_first_is_imported_by_its_url_with_a_mapping(
    api: Api, client: Any, database: db.Database
) -> None:
    content = "E-mail,Given name,Plan\nann@example.com,Ann,gold\nbob@example.com,Bob,silver\n"
    response = send_upload(api, content)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    url = data["attributes"]["url"]
    assert url == f"{api.base}/subscribers_uploads/{data['id']}"
    assert data["attributes"] == {
        "url": url,
        "header": ["E-mail", "Given name", "Plan"],
        "rows": 2,
        "sample": [["ann@example.com", "Ann", "gold"], ["bob@example.com", "Bob", "silver"]],
        "suggested_mapping": {"E-mail": "email", "Given name": "first_name", "Plan": "custom.Plan"},
    }
    waiting = client.get(url, headers={"authorization": f"Token token={api.key}"})
    assert waiting.status_code == 200, waiting.text
    assert waiting.json()["data"] == data
    assert subscriber_total(database) == 0  # nothing is imported before the import starts
    members = add_list(api, "Members")
    mapping = {"E-mail": "email", "Given name": "first_name", "Plan": "custom.plan"}
    job = import_csv_by(
        api, upload=f"http://localhost{url}", mapping=mapping, subscription_list_id=members
    )
    assert job["counts"] == {"added": 2, "updated": 0, "skipped": 0, "rejected": 0}
    people = by_email(api)
    assert people["ann@example.com"]["attributes"]["first_name"] == "Ann"
    assert custom_of(api, people["bob@example.com"]["id"]) == {"plan": "silver"}
    for email in ("ann@example.com", "bob@example.com"):
        assert memberships(api, people[email]["id"]) == {"All contacts": False, "Members": False}
    # An upload is imported once; it is not waiting any more.
    again = api.request("POST", "/subscribers_import", data={"upload": data["id"]})
    assert_error(again, 404, field="upload")
    assert_error(api.get(f"/subscribers_uploads/{data['id']}"), 404, field="upload")


def import_csv_by(api: Api, **fields: Any) -> dict[str, Any]:
    form = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items()}
    response = api.request("POST", "/subscribers_import", data=form)
    jid = ok(response)["jid"]
    job: dict[str, Any] = ok(api.get(f"/jobs/{jid}"))
    assert job["attributes"]["state"] == "succeeded", job
    return {"jid": jid, **job["attributes"]}


def test_an_import_names_a_file_or_an_upload_and_another_accounts_upload_is_not_found(
    api: Api, client: Any, database: db.Database
) -> None:
    assert_error(api.request("POST", "/subscribers_import", data={}), 422, field="file")
    staged = send_upload(api, "email\nann@example.com\n").json()["data"]
    both = api.request(
        "POST",
        "/subscribers_import",
        files={"file": ("people.csv", b"email\nbob@example.com\n", "text/csv")},
        data={"upload": staged["id"]},
    )
    assert_error(both, 422, field="file")
    other = make_account(client, database, "globex", orca=False)
    assert_error(other.get(f"/subscribers_uploads/{staged['id']}"), 404, field="upload")
    stolen = other.request(
        "POST", "/subscribers_import", data={"upload": staged["attributes"]["url"]}
    )
    assert_error(stolen, 404, field="upload")
    assert_error(
        api.request("POST", "/subscribers_import", data={"upload": "not-an-upload"}),
        404,
        field="upload",
    )
    assert subscriber_total(database) == 0
    # The refusals left the upload waiting for its own account.
    assert import_csv_by(api, upload=staged["id"])["counts"]["added"] == 1


def test_an_upload_no_mapping_can_import_is_refused_and_not_kept(api: Api) -> None:
    response = send_upload(api, "email,name\nann@example.com\n")
    assert_error(response, 422, field="file")
    assert "line 2" in response.json()["error"]


# A process that starts the reader, prints the reader's pid, then waits to be killed.
STARTS_A_READER = """
import multiprocessing, sys, time
if __name__ == "__main__":
    from dripstone.subscribers import importing
    reader = importing._reading_process()
    print(reader.submit(__import__("os").getpid).result(timeout=60), flush=True)
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\\nState:\\tZ" not in status  # a zombie has ended


def test_the_reader_process_ends_when_the_process_that_started_it_is_killed(
    tmp_path: Path,
) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one core: there is no reader process")
    script = tmp_path / "starts_a_reader.py"
    script.write_text(STARTS_A_READER)
    server = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        reader_pid = int(server.stdout.readline())
        assert reader_pid != server.pid
        assert _alive(reader_pid)
    finally:
        server.kill()
        server.wait()
    wait_until(lambda: not _alive(reader_pid), "the reader process ending", timeout=30)
