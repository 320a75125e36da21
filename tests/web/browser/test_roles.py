"""Each role in a real browser: what it is shown and what it is not, on the overview, the
drip campaign pages and the settings."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.web.browser.conftest import Session
from tests.web.browser.drip_setup import TeamApi, started_campaign


def test_a_viewer_reads_everything_and_changes_nothing(dashboard: Callable[..., Session]) -> None:
    session = dashboard(Role.VIEWER)
    api = TeamApi(session.base_url, session.team)
    campaign_id = started_campaign(api, send=True)
    page = session.go("/")
    expect(page.locator("#sends")).to_contain_text("Welcome aboard")
    expect(page.locator("#sends")).to_contain_text("100.0 %")  # all three delivered
    nav = page.get_by_role("navigation", name="Main")
    expect(nav).not_to_contain_text("Settings")
    expect(nav).not_to_contain_text("Import")
    expect(page.get_by_role("heading", name="Last 30 days")).to_be_visible()
    expect(page.locator("#drips")).to_contain_text("Welcome series")
    session.screenshot("overview-viewer")
    page = session.go(f"/drips/{campaign_id}")
    expect(page.locator('.bnode[data-node="t"]')).to_be_visible()
    # The steps are buttons to look at; no start, no pause, no palette, no save.
    expect(page.locator("main button:not(.bnode)")).to_have_count(0)
    page = session.go("/settings")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    api.close()


def test_an_editor_may_pause_drips_but_not_open_settings(dashboard: Callable[..., Session]) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    campaign_id = started_campaign(api)
    page = session.go("/")
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Settings")
    page = session.go(f"/drips/{campaign_id}")
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    page = session.go("/settings")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    page = session.go("/settings/audit")
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    api.close()


def test_an_owner_manages_users_and_keys_in_settings(dashboard: Callable[..., Session]) -> None:
    session = dashboard(Role.OWNER)
    page = session.page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Settings")
    expect(page.locator("#user-table")).to_contain_text(session.team.emails[Role.EDITOR])
    expect(page.locator("#sender-settings")).to_contain_text("Public URL")
    # A new key is shown once, and then only by its prefix.
    page.get_by_role("button", name="Create an API key").click()
    secret = page.locator("#secret")
    expect(secret).to_contain_text("ds_")
    key = secret.inner_text().strip()
    session.screenshot("settings-key-shown-once")
    # A new user, with the password shown once.
    page.get_by_label("Name").fill("Robin")
    page.get_by_label("Email address").fill(f"robin-{session.team.account}@example.com")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Add user").click()
    expect(page.locator("#shown-once")).to_contain_text("robin-")
    expect(page.locator("#user-table")).to_contain_text("Robin")
    page.goto("/settings")
    expect(page.locator("#key-table")).to_contain_text(key.split("_")[1])
    expect(page.locator("body")).not_to_contain_text(key)
    page.goto("/settings/audit")
    expect(page.locator("#audit")).to_contain_text("POST /settings/users")
    session.screenshot("settings-audit-log")
    page.goto("/settings")
    session.screenshot("settings-owner")
