"""The dashboard by keyboard alone: signing in, moving between pages, and sending a form."""

from __future__ import annotations

import uuid

from playwright.sync_api import Browser, Page, expect

from dripstone.users.models import Role
from tests.web.browser.conftest import LiveServer
from tests.web.conftest import PASSWORD, make_team


def _tab_to(page: Page, name: str, limit: int = 40) -> None:
    """Press Tab until the focused element is the one named `name`."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        focused = page.evaluate(
            "() => { const e = document.activeElement;"
            " return (e.labels && e.labels[0] ? e.labels[0].innerText : e.innerText) || ''; }"
        )
        if focused.strip() == name:
            return
    raise AssertionError(f"{name!r} not reached with {limit} presses of Tab")


def test_sign_in_move_between_pages_and_create_a_list_by_keyboard(
    browser: Browser, live_server: LiveServer
) -> None:
    team = make_team(live_server.database)
    context = browser.new_context(base_url=live_server.base_url)
    page = context.new_page()
    page.goto("/sign-in")
    page.keyboard.type(team.emails[Role.EDITOR])  # the address field has the focus
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    _tab_to(page, "Lists")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text("Lists")

    name = f"Keyboard {uuid.uuid4().hex[:6]}"
    _tab_to(page, "New list")
    page.keyboard.type(name)
    page.keyboard.press("Enter")
    expect(page.get_by_role("link", name=name)).to_be_visible()
    context.close()
