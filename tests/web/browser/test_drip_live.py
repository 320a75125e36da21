"""The builder on a running campaign in a real browser: the counts on the steps follow the
server's runner without a reload, a live edit says what it does to the people waiting before
it is saved (and the server then does just that), who waits at a step and the path one of
them took, and a test run of the campaign for typed facts."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from dripstone.users.models import Role
from tests.delivery.smtp_server import SmtpTestServer
from tests.drips.helpers import edge, graph, node, two_emails
from tests.mailings.helpers import HTML
from tests.processes import wait_until
from tests.web.browser.conftest import Session
from tests.web.browser.drip_setup import TeamApi
from tests.web.browser.test_accessibility import violations

# Whether a step is wholly inside the drawing's scrolling frame.
IN_FRAME = """(b) => {
  const frame = b.closest(".canvas-wrap").getBoundingClientRect();
  const box = b.getBoundingClientRect();
  return box.top >= frame.top && box.bottom <= frame.bottom;
}"""


def step(page: Page, node_id: str) -> Any:
    return page.locator(f'.bnode[data-node="{node_id}"]')


def news_and_mailings(
    api: TeamApi, subjects: tuple[str, ...], people: int = 0
) -> tuple[str, set[str], list[str]]:
    """A list with `people` subscribers (unique addresses), and one mailing per subject:
    the list's id, the subscribers' addresses, the mailings' ids."""
    news = api.call("POST", "/subscription_lists", {"subscription_list": {"name": "News"}})
    list_id: str = news["data"]["id"]
    emails = {f"live-{uuid.uuid4().hex[:10]}@example.com" for _ in range(people)}
    if emails:
        body = {"subscribers": [{"email": e} for e in emails], "subscription_list_id": list_id}
        api.call("POST", "/subscribers_bulk_create", body)
    mailings = [
        api.call(
            "POST", "/campaign_mailings", {"campaign_mailing": {"subject": s, "html_part": HTML}}
        )["data"]["id"]
        for s in subjects
    ]
    return list_id, emails, mailings


def draft(api: TeamApi, list_id: str, name: str, nodes: str) -> str:
    body = {
        "drip_campaign": {
            "name": name,
            "subscription_list_id": list_id,
            "start_trigger": "existing",
            "drip_campaign_nodes": nodes,
        }
    }
    campaign_id: str = api.call("POST", "/drip_campaigns", body)["data"]["id"]
    return campaign_id


def test_counts_follow_the_runner_and_a_live_edit_says_what_it_does(
    dashboard: Callable[..., Session], shared_smtp_server: SmtpTestServer
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, addresses, (welcome, tips) = news_and_mailings(api, ("Welcome", "Tips"), 3)
    campaign_id = draft(api, list_id, "Live series", two_emails(welcome, tips, 2, "days"))
    page = session.go(f"/drips/{campaign_id}")
    expect(step(page, "a")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    api.call("POST", f"/drip_campaigns/{campaign_id}/start")

    def welcomed() -> bool:
        sent = [m for m in shared_smtp_server.handler.messages if set(m.rcpt_tos) & addresses]
        return len(sent) == len(addresses)

    wait_until(welcomed, "the welcome email to reach the three subscribers", 60)
    # The page polls: the numbers change on the drawing, the page stays as it was.
    expect(step(page, "a")).to_contain_text("3 sent · 0 opened · 0 clicked")
    expect(step(page, "a")).to_contain_text("3 in · 0 waiting · 3 done")
    expect(step(page, "d")).to_contain_text("3 in · 3 waiting · 0 done")
    expect(step(page, "b")).to_contain_text("0 in · 0 waiting · 0 done")
    expect(page.locator("#state")).to_have_text("started")
    expect(page.locator("#state-changed")).to_contain_text("reload it")
    expect(page.locator("#step-a td.num")).to_have_text(["3", "0", "3", "3", "0", "0"])
    assert page.evaluate("window.notReloaded") is True
    session.screenshot("drip-live-counts")

    page.reload()  # for the Pause button, which the draft's page did not have
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#state")).to_have_text("paused")

    # Who waits at the delay, and the path the first of them took, on the drawing.
    side = page.locator("#builder-panel")
    step(page, "d").click()
    side.get_by_role("button", name="Who is here").click()
    waiting = side.locator(".who-list li")
    expect(waiting).to_have_count(3)
    assert {
        b.text_content() for b in side.locator(".who-list button[data-subscriber]").all()
    } == addresses
    expect(waiting.first).to_contain_text("next step")
    side.locator(".who-list button[data-subscriber]").first.click()
    for on_path in ("t", "a", "d"):
        expect(step(page, on_path)).to_have_class(_has("on-path"))
    expect(step(page, "d")).to_have_class(_has("here"))
    expect(step(page, "b")).not_to_have_class(_has("on-path"))
    expect(page.locator("g.link.on-path")).to_have_count(2)
    session.screenshot("drip-live-path")
    side.get_by_role("button", name="Clear the highlighted path").click()
    expect(page.locator(".bnode.on-path")).to_have_count(0)
    # A test run for one of them: from the trigger, the welcome, the delay, then the tips.
    first = side.locator(".who-list button[data-subscriber]").first.text_content()
    side.get_by_role("button", name=f"Test a path for {first}").click()
    tester = page.get_by_role("region", name="Test a path")
    named = tester.get_by_label("Subscriber's email address or id (optional)")
    expect(named).to_be_focused()
    tester.get_by_role("button", name="Run the test").click()
    expect(tester.locator("ol.simulated li")).to_have_count(4)
    assert [s.get_attribute("data-node") for s in tester.locator("ol.simulated li").all()] == [
        "t",
        "a",
        "d",
        "b",
    ]
    # The same run for the subscriber named by their address.
    tester.locator("#simulate-result").evaluate("box => box.replaceChildren()")
    named.fill(str(first).upper())
    tester.get_by_role("button", name="Run the test").click()
    expect(tester.locator("ol.simulated li")).to_have_count(4)
    expect(step(page, "b")).to_have_class(_has("here"))
    tester.get_by_role("button", name="Clear the highlighted path").click()

    # A graph the server refuses is refused by the preview, on the step it names, as a save is.
    step(page, "d").click()
    side.get_by_label("Wait").fill("")
    side.get_by_label("Wait").press("Tab")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#builder-errors")).to_be_visible()
    expect(step(page, "d")).to_have_class(_has("invalid"))
    expect(page.get_by_role("dialog")).to_have_count(0)
    page.get_by_role("button", name="Undo").click()

    # Remove the delay with the three waiting on it: the email follows the welcome at once.
    step(page, "d").click()
    page.keyboard.press("Delete")
    step(page, "a").click()
    side.get_by_label("Next step").select_option("b")
    page.get_by_role("button", name="Save").click()
    question = page.get_by_role("dialog", name="Save changes to a running campaign?")
    expect(question).to_be_visible()
    expect(question.locator("li")).to_have_text(["3 waiting at Delay d → move to Email b"])
    session.screenshot("drip-live-edit-confirm")
    question.get_by_role("button", name="Cancel").click()
    expect(question).to_be_hidden()
    expect(page.locator("#builder-status")).to_have_text("Unsaved changes")
    report = api.call("GET", f"/drip_campaigns/{campaign_id}/report")["data"]["enrollments"]
    assert {e["node_id"] for e in report} == {"d"}  # cancelled: nothing changed

    page.get_by_role("button", name="Save").click()
    question.get_by_role("button", name="Save").click()
    expect(page.locator("#builder-status")).to_have_text("Saved")
    with session.api() as client:
        found = client.get(f"/drip_campaigns/{campaign_id}/report").json()["data"]["enrollments"]
    assert sorted((e["node_id"], e["state"]) for e in found) == [("b", "active")] * 3
    expect(step(page, "b")).to_contain_text("0 in · 3 waiting · 0 done")
    assert violations(page) == []
    api.close()


def test_a_test_run_for_typed_facts_lists_and_draws_the_path(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, _, (welcome, tips, nudge) = news_and_mailings(api, ("Welcome", "Tips", "Nudge"))
    nodes = graph(
        [
            node("t", "trigger"),
            node("welcome", "email", campaign_mailing_id=welcome),
            node("wait", "delay", amount=1, unit="days"),
            node("opened", "condition", check="opened", node="welcome"),
            node("tips", "email", campaign_mailing_id=tips),
            node("nudge", "email", campaign_mailing_id=nudge),
        ],
        [
            edge("t", "welcome"),
            edge("welcome", "wait"),
            edge("wait", "opened"),
            edge("opened", "tips", "yes"),
            edge("opened", "nudge", "no"),
        ],
    )
    campaign_id = draft(api, list_id, "Tested series", nodes)
    page = session.go(f"/drips/{campaign_id}")
    tester = page.get_by_role("region", name="Test a path")
    tester.get_by_label("opened Email welcome").check()
    tester.get_by_label("Time zone (optional)").fill("Europe/Berlin")
    tester.get_by_role("button", name="Run the test").click()
    steps = tester.locator("ol.simulated li")
    expect(steps).to_have_count(5)
    assert [s.get_attribute("data-node") for s in steps.all()] == [
        "t",
        "welcome",
        "wait",
        "opened",
        "tips",
    ]
    expect(steps.nth(1)).to_contain_text('Email welcome sent email "Welcome"')
    expect(steps.last).to_contain_text('Email tips sent email "Tips"')
    expect(tester.locator("#simulate-outcome")).to_have_text("Completes the campaign.")
    expect(step(page, "tips")).to_have_class(_has("here"))
    expect(step(page, "nudge")).not_to_have_class(_has("on-path"))
    assert step(page, "tips").evaluate(IN_FRAME)  # the drawing's frame scrolled to it
    session.screenshot("drip-live-simulate")

    # Not opened: the other branch.
    tester.get_by_label("opened Email welcome").uncheck()
    tester.get_by_role("button", name="Run the test").click()
    expect(steps.last).to_have_attribute("data-node", "nudge")
    expect(step(page, "nudge")).to_have_class(_has("here"))
    expect(step(page, "tips")).not_to_have_class(_has("on-path"))
    # A time zone the server does not know is refused, and said so.
    tester.get_by_label("Time zone (optional)").fill("Mars/Base")
    tester.get_by_role("button", name="Run the test").click()
    expect(tester.get_by_role("alert")).to_contain_text("facts.timezone: ")
    assert violations(page) == []
    api.close()


def _has(name: str) -> re.Pattern[str]:
    """A class list that has `name` among its classes."""
    return re.compile(rf"\b{name}\b")
