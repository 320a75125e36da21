"""Writing and sending a mailing in a real browser: the live preview follows the HTML, a test
email and a send to a list arrive at the SMTP server the live server delivers to."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.delivery.smtp_server import SmtpTestServer
from tests.processes import wait_until
from tests.web.browser.conftest import LiveServer, Session
from tests.web.browser.test_accessibility import violations


def _settle_preview(session: Session) -> None:
    """Let the preview finish loading and be painted: Chromium paints a cross-origin
    (sandboxed) frame into a full-page capture only once it has loaded and been on screen."""
    frame = session.page.frame(name="preview")
    assert frame is not None
    frame.wait_for_load_state("load")
    session.page.locator("iframe[name=preview]").scroll_into_view_if_needed()
    session.page.evaluate("() => new Promise((done) => requestAnimationFrame(() => done()))")


def _received(server: SmtpTestServer, address: str) -> int:
    return sum(1 for m in list(server.handler.messages) if address in m.rcpt_tos)


def test_write_preview_save_test_and_send_a_mailing(
    dashboard: Callable[..., Session],
    live_server: LiveServer,
    shared_smtp_server: SmtpTestServer,
) -> None:
    session = dashboard(Role.EDITOR)
    page = session.page
    tag = uuid.uuid4().hex[:10]
    robin, sam, tester = (f"{name}-{tag}@example.com" for name in ("robin", "sam", "tester"))
    with session.api() as api:
        created = api.post("/subscription_lists", json={"subscription_list": {"name": "Readers"}})
        list_id = created.json()["data"]["id"]
        rows = [{"email": robin, "first_name": "Robin"}, {"email": sam, "first_name": "Sam"}]
        answer = api.post(
            "/subscribers_bulk_create",
            json={"subscription_list_id": list_id, "subscribers": rows},
        )
        assert answer.status_code == 200, answer.text

    session.go("/mailings")
    page.get_by_role("link", name="New mailing").click()
    page.get_by_label("Subject").fill("News for {{ first_name }}")
    page.get_by_label("A subscriber").select_option(robin)
    source = page.get_by_label("HTML source")
    source.fill(
        '<h1>Hello {{ first_name }}</h1>\n<p><a href="https://example.com/spring">Spring</a></p>'
    )
    preview = page.frame_locator("iframe[name=preview]")
    expect(preview.locator("h1")).to_have_text("Hello Robin")
    expect(preview.get_by_text("Subject: News for Robin")).to_be_visible()
    link = preview.get_by_role("link", name="Spring")
    expect(link).to_have_attribute("href", re.compile(re.escape(f"{live_server.base_url}/t/c/")))
    source.fill('<h1>Goodbye {{ first_name }}</h1>\n<p><a href="https://example.com/x">X</a></p>')
    expect(preview.locator("h1")).to_have_text("Goodbye Robin")
    _settle_preview(session)
    session.screenshot("mailings-editor-with-preview")

    page.get_by_role("button", name="Create mailing").click()
    expect(page.get_by_role("status").first).to_have_text("Mailing created.")

    page.get_by_label("Send one copy to").fill(tester)
    page.get_by_role("button", name="Send test email").click()
    expect(page.get_by_text("Test email queued")).to_be_visible()
    wait_until(lambda: _received(shared_smtp_server, tester) == 1, "the test email", 30)

    page.get_by_label("List or segment", exact=True).select_option(label="Readers")
    page.get_by_role("button", name="Review the send").click()
    expect(page.locator("#audience")).to_have_text("2 subscribers")
    session.screenshot("mailings-confirm-send")
    page.get_by_role("button", name="Send now").click()
    page.wait_for_url(f"{live_server.base_url}/sends/*")
    wait_until(
        lambda: (
            _received(shared_smtp_server, robin) == 1 and _received(shared_smtp_server, sam) == 1
        ),
        "the send to both readers",
        60,
    )


def test_a_viewer_on_a_phone_reads_the_list_and_the_editor_without_sideways_scrolling(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.VIEWER, width=390, height=844)
    page = session.page
    with session.api() as api:
        body = {
            "campaign_mailing": {
                "subject": "A rather long subject line for a small screen {{ first_name }}",
                "html_part": "<h1>Hello {{ first_name | default('reader') }}</h1>",
            }
        }
        assert api.post("/campaign_mailings", json=body).status_code == 200
    session.go("/mailings")
    expect(page.get_by_role("link", name="New mailing")).to_have_count(0)
    page.get_by_role("link", name="A rather long subject").click()
    expect(page.frame_locator("iframe[name=preview]").locator("h1")).to_have_text("Hello reader")
    expect(page.get_by_label("Subject")).to_have_attribute("readonly", "")
    expect(page.get_by_role("button", name="Save")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    _settle_preview(session)
    session.screenshot("mailings-editor-viewer-phone")


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_the_mailings_pages_pass_axe_core(
    dashboard: Callable[..., Session], live_server: LiveServer, width: int
) -> None:
    session = dashboard(Role.OWNER, width=width)
    with session.api() as api:
        api.post("/subscription_lists", json={"subscription_list": {"name": "Readers"}})
        body = {"campaign_mailing": {"subject": "Checked", "html_part": "<p>{{ email }}</p>"}}
        mailing_id = api.post("/campaign_mailings", json=body).json()["data"]["id"]
    found = {}
    for path in ("/mailings", "/mailings/new", f"/mailings/{mailing_id}"):
        session.go(path)
        if problems := violations(session.page):
            found[path] = problems
    session.page.get_by_role("button", name="Review the send").click()
    expect(session.page.locator("#audience")).to_be_visible()
    if problems := violations(session.page):
        found["confirmation"] = problems
    assert found == {}
