"""Importing a CSV file through the dashboard in a real browser: upload, map, follow."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import expect
from sqlalchemy import func, select
from sqlalchemy.orm import Session as OrmSession

from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.subscribers import lists, service
from dripstone.subscribers.models import CustomFieldType, Subscriber
from dripstone.subscribers.schemas import SubscriberCreateFields
from dripstone.users.models import Role
from tests.web.browser.conftest import LiveServer, Session

ROWS = 5_000
BAD_LINE = 2_501  # the 2,500th row's address is not one


def _people(path: Path, domain: str) -> Path:
    lines = ["Email Address,First Name,Last Name,Favourite colour"]
    for n in range(1, ROWS + 1):
        address = "not-an-address" if n + 1 == BAD_LINE else f"person{n}@{domain}"
        lines.append(f"{address},First{n},Last{n},{'blue' if n % 2 else 'green'}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_an_editor_imports_5000_rows_maps_them_and_sees_the_import_finish(
    dashboard: Callable[..., Session], live_server: LiveServer, tmp_path: Path
) -> None:
    session = dashboard(Role.EDITOR)
    page = session.page
    domain = f"{session.team.account}.example.com"
    session.go("/imports")
    expect(page.get_by_role("heading", level=1)).to_have_text("Import subscribers")
    people = _people(tmp_path / "people.csv", domain)
    page.get_by_label("CSV file", exact=True).set_input_files(str(people))
    page.get_by_role("button", name="Upload and map the columns").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Map the columns")
    expect(page.get_by_text("The file has 5,000 rows and 4 columns")).to_be_visible()
    # Pre-filled from the header names.
    expect(page.get_by_label("Email Address")).to_have_value("email")
    expect(page.get_by_label("First Name")).to_have_value("first_name")
    expect(page.get_by_label("Last Name")).to_have_value("last_name")
    expect(page.get_by_label("Favourite colour")).to_have_value("new")
    # The name box shows only for a new custom field.
    expect(page.get_by_label("Name of the new custom field for column 1")).to_be_hidden()
    page.get_by_label("Name of the new custom field for column 4").fill("Colour")
    preview = page.locator("table.preview tbody tr")
    expect(preview).to_have_count(5)
    expect(preview.first).to_contain_text(f"person1@{domain}")
    session.screenshot("import-mapping")

    page.get_by_role("button", name="Start the import of 5,000 rows").click()
    expect(page).to_have_url(re.compile(r"/imports/jobs/[0-9a-f-]{36}$"))
    progress = page.locator("#import-progress")
    expect(progress.get_by_role("heading")).to_have_text("Import finished", timeout=60_000)
    expect(progress.locator('[data-count="added"]')).to_have_text("4,999")
    expect(progress.locator('[data-count="rejected"]')).to_have_text("1")
    expect(progress).to_contain_text("5,000 of 5,000 rows read")
    expect(progress.locator("progress")).to_have_attribute("value", "5000")
    link = progress.get_by_role("link", name=re.compile("Download the rejected rows"))
    expect(link).to_be_visible()
    session.screenshot("import-finished")

    with page.expect_download() as download:
        link.click()
    rejected = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert rejected[0] == "line,reason,Email Address,First Name,Last Name,Favourite colour"
    assert rejected[1].startswith(f"{BAD_LINE},email: not a valid email address")
    assert len(rejected) == 2

    session.go("/imports")
    latest = page.get_by_role("region", name="Latest imports")
    expect(latest.locator("tbody tr")).to_have_count(1)
    expect(latest.locator("tbody tr")).to_contain_text("succeeded")
    session.screenshot("import-upload-with-latest")

    with live_server.database.read_sessions() as db_session:
        added = db_session.scalar(
            select(func.count()).select_from(Subscriber).where(Subscriber.email.like(f"%@{domain}"))
        )
        fields = db_session.scalars(
            select(CustomFieldType.name).where(CustomFieldType.name == "Colour")
        ).all()
    assert added == ROWS - 1
    assert fields


def test_the_mapping_page_fits_a_phone_and_shows_what_is_wrong(
    dashboard: Callable[..., Session], tmp_path: Path
) -> None:
    session = dashboard(Role.EDITOR, width=390, height=844)
    page = session.page
    session.go("/imports")
    people = tmp_path / "no-email.csv"
    people.write_text("Name,City,Notes\nAnn,Oslo,likes <b>tea</b>\n", encoding="utf-8")
    page.get_by_label("CSV file", exact=True).set_input_files(str(people))
    page.get_by_role("button", name="Upload and map the columns").click()
    expect(page.get_by_text("No column feeds the email address yet")).to_be_visible()
    expect(page.locator("table.preview")).to_contain_text("likes <b>tea</b>")
    page.get_by_role("button", name="Start the import of 1 row").click()
    expect(page.get_by_role("alert")).to_contain_text("No email column")
    # The page itself does not scroll sideways; wide tables scroll inside their frame.
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    session.screenshot("import-mapping-phone-no-email")


def test_a_viewer_downloads_a_list_as_csv_from_the_export_page(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.VIEWER)
    page = session.page
    domain = f"{session.team.account}.example.com"
    with live_server.database.transaction() as db_session:
        scope = AccountScope(db_session, _account_id(db_session, session.team.account))
        members = lists.create_list(scope, "Members")
        fields = SubscriberCreateFields(
            email=f"eve@{domain}", first_name="=cmd()", last_name="Gray"
        )
        service.create_subscriber(scope, fields, members.uuid)
    session.go("/exports")
    expect(page.get_by_role("heading", level=1)).to_have_text("Export subscribers")
    session.screenshot("export-page")
    with page.expect_download() as download:
        page.get_by_role("region", name="A whole list").get_by_role("link", name="Members").click()
    rows = Path(download.value.path()).read_text(encoding="utf-8").splitlines()
    assert rows == [
        "email,first_name,last_name,phone_number,status",
        f"eve@{domain},'=cmd(),Gray,,subscribed",
    ]


def _account_id(db_session: OrmSession, username: str) -> int:
    found: int = db_session.scalars(select(Account.id).where(Account.username == username)).one()
    return found
