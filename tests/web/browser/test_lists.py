"""Lists and a dynamic list built row by row in a real browser."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.web.browser.conftest import LiveServer, Session
from tests.web.browser.test_subscribers import _ok


def test_create_a_list_and_a_dynamic_list_with_an_added_row(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.EDITOR)
    page = session.page
    token = uuid.uuid4().hex[:8]
    with session.api() as api:
        rows = [
            {"email": f"gold{n}{token}@example.com", "custom_fields": [{"plan": "gold"}]}
            for n in range(3)
        ]
        rows += [{"email": f"vip{token}@example.org", "custom_fields": [{"plan": "free"}]}]
        rows += [{"email": f"free{token}@example.com", "custom_fields": [{"plan": "free"}]}]
        _ok(api.post("/subscribers_bulk_create", json={"subscribers": rows}))

    session.go("/lists")
    page.get_by_label("New list").fill("Patients")
    page.get_by_role("button", name="Create list").click()
    expect(page.get_by_role("status")).to_have_text("List created")
    expect(page.get_by_role("link", name="Patients")).to_be_visible()
    # The count arrives after the page.
    expect(page.locator("tr", has_text="All contacts").locator("td.num")).to_have_text("5")

    page.get_by_role("link", name="New dynamic list").click()
    page.get_by_label("Name").fill("Gold or org")
    page.locator("#field-0").select_option("plan")
    page.locator("#terms-0").fill("gold")
    page.get_by_role("button", name="Add a row").click()
    page.locator("#join-1").select_option("or")
    page.locator("#field-1").select_option("email")
    page.locator("#op-1").select_option("ends_with")
    page.locator("#terms-1").fill(".org")
    session.screenshot("lists-dynamic-list-form")
    page.get_by_role("button", name="Save dynamic list").click()
    expect(page.get_by_role("status")).to_have_text("Dynamic list saved")
    row = page.locator("tr", has_text="Gold or org")
    expect(row.locator("td.num")).to_have_text("4")
    session.screenshot("lists-page")
    row.get_by_role("link", name="Gold or org", exact=True).click()
    expect(page.locator("table tbody tr")).to_have_count(4)
