"""A drip campaign's steps in a real browser (the builder, read-only for a viewer), and pausing
it with the confirmation."""

from __future__ import annotations

from collections.abc import Callable

from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.web.browser.conftest import Session
from tests.web.browser.drip_setup import TeamApi, started_campaign
from tests.web.browser.test_accessibility import violations


def test_an_editor_opens_the_drawing_and_pauses_the_campaign(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    campaign_id = started_campaign(api)
    page = session.page
    page.get_by_role("link", name="Drip campaigns").first.click()
    page.get_by_role("link", name="Welcome series").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome series")
    drawing = page.locator("#builder-canvas")
    for step in ("t", "a", "d", "b"):
        expect(drawing.locator(f'.bnode[data-node="{step}"]')).to_be_visible()
    expect(drawing).to_contain_text("Welcome aboard")
    expect(drawing).to_contain_text("wait 2 days")
    # The server's runner sends the first email; the drawing shows it once reloaded.
    expect(page.locator("#enrollments")).to_contain_text("@example.com")
    session.screenshot("drip-drawing-started")

    questions: list[str] = []

    def accept(dialog: object) -> None:
        questions.append(dialog.message)  # type: ignore[attr-defined]
        dialog.accept()  # type: ignore[attr-defined]

    page.once("dialog", accept)
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#state")).to_have_text("paused")
    assert questions
    assert "Pause this campaign?" in questions[0]
    expect(page.get_by_role("button", name="Resume")).to_be_visible()
    assert (
        api.call("GET", f"/drip_campaigns/{campaign_id}")["data"]["attributes"]["state"] == "paused"
    )
    session.screenshot("drip-drawing-paused")
    assert violations(page) == []
    api.close()


def test_the_drawing_fits_a_phone_by_scrolling_inside_its_frame(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.VIEWER, width=390, height=844)
    api = TeamApi(session.base_url, session.team)
    campaign_id = started_campaign(api, name="Phone series")
    page = session.go(f"/drips/{campaign_id}")
    expect(page.locator('.bnode[data-node="t"]')).to_be_visible()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    overflow = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert overflow, "the page itself must not scroll sideways at 390 px"
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    session.screenshot("drip-drawing-phone")
    assert violations(page) == []
    api.close()
