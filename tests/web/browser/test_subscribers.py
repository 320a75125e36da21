"""Finding a subscriber, reading their timeline and editing them in a real browser; the list
at phone width."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import expect

from dripstone.users.models import Role
from tests.delivery.smtp_server import SmtpTestServer
from tests.processes import wait_until
from tests.web.browser.conftest import LiveServer, Session


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_find_a_subscriber_read_the_timeline_and_edit(
    dashboard: Callable[..., Session],
    live_server: LiveServer,
    shared_smtp_server: SmtpTestServer,
) -> None:
    session = dashboard(Role.EDITOR)
    page = session.page
    token = uuid.uuid4().hex[:8]
    address = f"robin{token}@example.com"
    with session.api() as api:
        patients = _ok(api.post("/subscription_lists", json={"name": "Patients"}))["id"]
        _ok(
            api.post(
                "/subscribers",
                json={
                    "subscriber": {
                        "email": address,
                        "first_name": "Robin",
                        "custom_fields": [{"clinic": "North"}],
                    },
                    "subscription_list_id": patients,
                },
            )
        )
        for n in range(3):
            _ok(
                api.post(
                    "/subscribers", json={"subscriber": {"email": f"other{n}{token}@example.com"}}
                )
            )
        mailing = _ok(
            api.post(
                "/campaign_mailings",
                json={
                    "campaign_mailing": {
                        "subject": "Your appointment",
                        "html_part": "<p>Hi {{ first_name }}</p>",
                    }
                },
            )
        )["id"]
        _ok(
            api.post(
                "/campaign_mailing_sends",
                json={
                    "campaign_mailing_id": mailing,
                    "campaign_mailing_send": {
                        "sender_email": "clinic@example.com",
                        "subscription_list_id": patients,
                    },
                },
            )
        )

    session.go("/subscribers")
    page.get_by_label("Search").fill(f"robin{token}")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name=address)).to_have_count(1)
    expect(page.locator("table tbody tr")).to_have_count(1)
    page.get_by_role("link", name=address).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(address)

    wait_until(
        lambda: any(address in m.rcpt_tos for m in shared_smtp_server.handler.messages),
        f"the mailing delivered to {address}",
        60,
    )
    timeline = page.locator("#timeline")
    # The page shows what the database says when it is loaded: reload once the relay has it.
    for _ in range(100):
        page.reload()
        if timeline.get_by_text("Delivered").count():
            break
        page.wait_for_timeout(100)
    expect(timeline.locator("li").first).to_contain_text("Delivered")
    expect(timeline.locator("li").first).to_contain_text("Your appointment")
    expect(timeline).to_contain_text("Joined")
    expect(timeline).to_contain_text("Patients")
    expect(page.get_by_label("clinic")).to_have_value("North")
    session.screenshot("subscriber-timeline")

    page.get_by_label("First name").fill("Robyn")
    page.get_by_label("clinic").fill("South")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved")
    expect(page.get_by_label("First name")).to_have_value("Robyn")
    expect(page.get_by_label("clinic")).to_have_value("South")

    page.get_by_label("Email").fill("robin@localhost")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#f-email-error")).to_be_visible()
    expect(page.get_by_label("Email")).to_have_value("robin@localhost")
    session.screenshot("subscriber-edit-refused")


def test_the_subscribers_list_at_phone_width(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.EDITOR, width=390, height=844)
    token = uuid.uuid4().hex[:8]
    with session.api() as api:
        rows = [
            {"email": f"phone{n}{token}@example.com", "first_name": f"Person {n}"}
            for n in range(12)
        ]
        _ok(api.post("/subscribers_bulk_create", json={"subscribers": rows}))
    page = session.go("/subscribers")
    expect(page.locator("table tbody tr")).to_have_count(12)
    # The table scrolls inside its frame; the page itself does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    session.screenshot("subscribers-list-phone")


def test_unsubscribe_everyone_matching_with_a_confirmation_and_a_progress_bar(
    dashboard: Callable[..., Session], live_server: LiveServer
) -> None:
    session = dashboard(Role.EDITOR)
    page = session.page
    token = uuid.uuid4().hex[:8]
    with session.api() as api:
        rows = [{"email": f"leave{n}{token}@example.com"} for n in range(60)]
        rows.append({"email": f"stay{token}@example.com"})
        _ok(api.post("/subscribers_bulk_create", json={"subscribers": rows}))
    session.go("/subscribers")
    page.get_by_label("Search").fill(f"leave {token}")
    page.get_by_role("button", name="Search").click()
    expect(page.locator("table tbody tr")).to_have_count(50)
    session.screenshot("subscribers-search")
    page.get_by_label("Action").select_option("unsubscribe")
    page.get_by_role("button", name="Apply to all matching").click()
    expect(page.locator(".figure")).to_have_text("60 subscribers")
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Unsubscribe from all mail: 60 subscribers").click()
    expect(page.locator("#job-state")).to_have_text("succeeded")
    expect(page.locator("#job-counts")).to_have_text("60 of 60 done")
    assert questions == ["Unsubscribe 60 subscribers from all mail?"]
    session.screenshot("subscribers-bulk-progress")
    with session.api() as api:
        found = _ok(api.get("/subscribers", params={"search": token, "items": 100}))
    out = {s["attributes"]["email"] for s in found if s["attributes"]["unsubscribed"]}
    assert out == {f"leave{n}{token}@example.com" for n in range(60)}
