"""Signing in and out in a real browser."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import Browser, expect

from dripstone.users.models import Role
from tests.web.browser.conftest import LiveServer, Session
from tests.web.conftest import make_team


def test_a_user_signs_in_sees_their_role_and_signs_out(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.VIEWER)
    page = session.page
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(page.locator(".who")).to_contain_text("viewer")
    # A viewer is not shown what only owners may open.
    expect(page.get_by_role("navigation", name="Main")).not_to_contain_text("Settings")
    session.screenshot("sign-in-overview-viewer")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Dripstone")
    page.goto(f"{live_server.base_url}/")
    expect(page).to_have_url(f"{live_server.base_url}/sign-in")


def test_a_wrong_password_is_refused_with_a_message_and_keeps_the_address(
    browser: Browser, live_server: LiveServer
) -> None:
    team = make_team(live_server.database)
    context = browser.new_context(base_url=live_server.base_url)
    page = context.new_page()
    page.goto("/sign-in")
    page.get_by_label("Email").fill(team.emails[Role.OWNER])
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    expect(page.get_by_label("Email")).to_have_value(team.emails[Role.OWNER])
    context.close()
