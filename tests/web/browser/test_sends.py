"""A send watched in a real browser: its progress reaches 100 % on the open page, without a
reload, and the page then shows its analytics."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.delivery.smtp_server import SmtpTestServer
from tests.web.browser.conftest import LiveServer, Session
from tests.web.browser.test_accessibility import violations

RECIPIENTS = 60
HTML = (
    "<p>Hello {{ first_name }},</p>"
    '<p><a href="https://shop.example.com/spring">The spring sale</a> and '
    '<a href="https://blog.example.com/notes">our notes</a>.</p>'
)


def api_call(live_server: LiveServer, key: str, method: str, path: str, **body: Any) -> Any:
    response = httpx.request(
        method,
        f"{live_server.base_url}/v1/marketing{path}",
        headers={"authorization": f"Token token={key}"},
        json=body or None,
        follow_redirects=False,
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_a_send_reaches_100_percent_on_the_open_page_and_shows_its_analytics(
    dashboard: Callable[..., Session],
    live_server: LiveServer,
    shared_smtp_server: SmtpTestServer,
) -> None:
    session = dashboard(Role.VIEWER)
    key = session.team.api_key
    tag = uuid.uuid4().hex[:8]
    people = [f"reader{n}-{tag}@example.com" for n in range(RECIPIENTS)]
    list_id = api_call(
        live_server, key, "POST", "/subscription_lists", subscription_list={"name": "Spring"}
    )["id"]
    api_call(
        live_server,
        key,
        "POST",
        "/subscribers_bulk_create",
        subscription_list_id=list_id,
        subscribers=[{"email": a, "first_name": f"Reader {n}"} for n, a in enumerate(people)],
    )
    mailing_id = api_call(
        live_server,
        key,
        "POST",
        "/campaign_mailings",
        campaign_mailing={"subject": "Spring sale", "html_part": HTML},
    )["id"]
    send_id = api_call(
        live_server,
        key,
        "POST",
        "/campaign_mailing_sends",
        campaign_mailing_id=mailing_id,
        campaign_mailing_send={
            "sender_email": "owner@example.com",
            "subscription_list_id": list_id,
        },
    )["campaign_mailing_send_id"]

    page = session.go(f"/sends/{send_id}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Spring sale")
    page.evaluate("window.loadedOnce = true")
    figure = page.locator("#progress-figure")
    expect(figure).to_have_text(f"{RECIPIENTS} of {RECIPIENTS} (100 %)", timeout=60_000)
    expect(page.locator("#send-progress .badge")).to_have_text("sent")
    # The same page, never reloaded: only the progress fragment was swapped in.
    assert page.evaluate("window.loadedOnce") is True
    expect(page.locator("#send-progress")).not_to_have_attribute("hx-trigger", re.compile("."))

    # Two readers click the sale link; the page shows it after a reload.
    for address in people[:2]:
        (message,) = [m for m in shared_smtp_server.handler.messages if address in m.rcpt_tos]
        body = message.data.decode("utf-8", "replace").replace("=\r\n", "").replace("=3D", "=")
        click = re.search(r'href="(https?://[^"]+/t/c/[^"]+)"', body)
        assert click is not None
        tracked = httpx.get(click.group(1), follow_redirects=False, headers={"user-agent": UA})
        assert tracked.status_code == 302
    page.reload()
    links = page.locator("section[aria-labelledby=links-heading] tbody tr")
    expect(links.first).to_contain_text("https://shop.example.com/spring")
    expect(links.first.locator("td").nth(1)).to_have_text("2")
    expect(page.locator(".sends-totals")).to_contain_text(f"{RECIPIENTS}")
    session.screenshot("sends-send-finished-with-analytics")
    assert violations(page) == []

    page.get_by_role("link", name="Who clicked link 1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Who clicked link 1")
    expect(page.locator("tbody tr")).to_have_count(2)
    assert violations(page) == []
    page.get_by_role("link", name="Spring sale").click()
    page.get_by_role("link", name="All sends").click()
    expect(page.locator("tbody tr").first).to_contain_text("Spring sale")
    expect(page.locator("tbody tr").first).to_contain_text("100.0 %")
    session.screenshot("sends-list")
    assert violations(page) == []

    # At phone width the page fits; its tables scroll inside their frames.
    phone = dashboard(Role.VIEWER, width=390, height=844)
    phone.go(f"/sends/{send_id}")
    expect(phone.page.locator("#progress-figure")).to_have_text(
        f"{RECIPIENTS} of {RECIPIENTS} (100 %)"
    )
    assert phone.page.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot("sends-send-phone")
    assert violations(phone.page) == []


UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"
