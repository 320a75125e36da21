"""The drip builder in a real browser: a welcome series built from an empty campaign with the
mouse, and again with the keyboard alone, is the graph the API then reads; a graph the server
refuses shows the problem on the step it names, and saves nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import Page, expect

from dripstone.users.models import Role
from tests.drips.helpers import edge, graph, node
from tests.mailings.helpers import HTML
from tests.web.browser.conftest import Session
from tests.web.browser.drip_setup import TeamApi
from tests.web.browser.test_accessibility import violations

SUBJECTS = ("Welcome aboard", "Three tips", "Did you see this?")
# Whether the page would ask before it is left (its beforeunload handler cancels the event).
LEAVING = """() => {
  const event = new Event("beforeunload", { cancelable: true });
  window.dispatchEvent(event);
  return event.defaultPrevented;
}"""


def mailings_and_list(api: TeamApi) -> tuple[str, dict[str, str]]:
    found = api.call("POST", "/subscription_lists", {"subscription_list": {"name": "News"}})
    mailings = {
        subject: api.call(
            "POST",
            "/campaign_mailings",
            {"campaign_mailing": {"subject": subject, "html_part": HTML}},
        )["data"]["id"]
        for subject in SUBJECTS
    }
    return found["data"]["id"], mailings


def empty_campaign(api: TeamApi, list_id: str, name: str) -> str:
    body = {
        "drip_campaign": {
            "name": name,
            "subscription_list_id": list_id,
            "start_trigger": "existing",
            "drip_campaign_nodes": graph([node("trigger", "trigger")], []),
        }
    }
    campaign_id: str = api.call("POST", "/drip_campaigns", body)["data"]["id"]
    return campaign_id


def stored(api: TeamApi, campaign_id: str) -> dict[str, Any]:
    found = api.call("GET", f"/drip_campaigns/{campaign_id}")["data"]["attributes"]
    loaded: dict[str, Any] = json.loads(found["drip_campaign_nodes"])
    return loaded


def structure(saved: dict[str, Any]) -> tuple[dict[str, tuple[str, Any]], set[tuple[Any, ...]]]:
    """Each step's kind and data by id, and the edges as (source, target, handle)."""
    steps = {n["id"]: (n["type"], n["data"]) for n in saved["nodes"]}
    edges = {(e["source"], e["target"], e["sourceHandle"]) for e in saved["edges"]}
    return steps, edges


def welcome_series(mailings: dict[str, str]) -> tuple[dict[str, tuple[str, Any]], set[Any]]:
    welcome, tips, nudge = (mailings[s] for s in SUBJECTS)
    steps = {
        "trigger": ("trigger", {}),
        "email_1": ("email", {"campaign_mailing_id": welcome}),
        "delay_1": ("delay", {"amount": 2, "unit": "days"}),
        "condition_1": ("condition", {"check": "clicked", "node": "email_1"}),
        "email_2": ("email", {"campaign_mailing_id": tips}),
        "email_3": ("email", {"campaign_mailing_id": nudge}),
    }
    edges = {
        ("trigger", "email_1", None),
        ("email_1", "delay_1", None),
        ("delay_1", "condition_1", None),
        ("condition_1", "email_2", "yes"),
        ("condition_1", "email_3", "no"),
    }
    return steps, edges


# The pairs of steps whose boxes on the page overlap.
OVERLAPPING = """() => {
  const boxes = [...document.querySelectorAll(".bnode")]
    .map((b) => [b.dataset.node, b.getBoundingClientRect()]);
  const pairs = [];
  for (const [i, [a, p]] of boxes.entries()) {
    for (const [b, q] of boxes.slice(i + 1)) {
      const apart = p.right <= q.left || q.right <= p.left || p.bottom <= q.top
        || q.bottom <= p.top;
      if (!apart) pairs.push([a, b]);
    }
  }
  return pairs;
}"""


def changed(nodes: list[dict[str, Any]], edges: list[dict[str, Any]]) -> dict[str, Any]:
    return {"drip_campaign": {"drip_campaign_nodes": graph(nodes, edges)}}


def step(page: Page, node_id: str) -> Any:
    return page.locator(f'.bnode[data-node="{node_id}"]')


def panel(page: Page) -> Any:
    return page.locator("#builder-panel")


def drag(page: Page, start: Any, end: Any) -> None:
    """Press on the middle of `start`, move in steps to the middle of `end`, release."""
    page.locator("#builder-canvas").scroll_into_view_if_needed()
    a = start.bounding_box()
    b = end.bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=8)
    page.mouse.up()


def test_a_welcome_series_built_with_the_mouse_is_what_the_api_reads(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    _, mailings = mailings_and_list(api)
    page = session.go("/drips")
    page.get_by_role("form", name="New drip campaign").get_by_label("Name").fill("Welcome series")
    page.get_by_role("button", name="Create and open the builder").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Welcome series")
    campaign_id = page.url.rsplit("/", 1)[1]
    expect(step(page, "trigger")).to_be_visible()
    expect(page.locator("svg.graph")).to_be_hidden()  # the server's drawing gives way
    session.screenshot("drip-builder-empty")

    step(page, "trigger").click()
    page.get_by_role("button", name="Email", exact=True).click()
    panel(page).get_by_label("Mailing").select_option(label="Welcome aboard")
    expect(step(page, "email_1")).to_contain_text("Welcome aboard")
    page.get_by_role("button", name="Delay", exact=True).click()
    panel(page).get_by_label("Wait").fill("2")
    panel(page).get_by_label("Wait").press("Tab")
    expect(step(page, "delay_1")).to_contain_text("wait 2 days")
    page.get_by_role("button", name="Condition", exact=True).click()
    panel(page).get_by_label("Check").select_option("clicked")
    expect(panel(page).get_by_label("Email step")).to_have_value("email_1")
    # The link can be picked among the chosen email's links.
    link = panel(page).get_by_label("Link (optional)")
    offered = link.evaluate("box => [...box.list.options].map((o) => o.value)")
    assert offered == ["https://shop.example.com/sale", "https://blog.example.com/post?id=1"]
    page.get_by_role("button", name="Email", exact=True).click()  # on "yes", the free handle
    panel(page).get_by_label("Mailing").select_option(label="Three tips")
    # A step added with nothing selected stands alone; drag the "no" handle onto it.
    page.locator("#builder-canvas").click(position={"x": 5, "y": 5})
    expect(panel(page)).to_contain_text("Nothing selected")
    page.get_by_role("button", name="Email", exact=True).click()
    panel(page).get_by_label("Mailing").select_option(label="Did you see this?")
    drag(page, step(page, "condition_1").locator('[data-handle="no"]'), step(page, "email_3"))
    expect(page.locator("g.link")).to_have_count(5)
    assert page.evaluate(OVERLAPPING) == []
    # Moving a step keeps it where it was put.
    step(page, "email_3").scroll_into_view_if_needed()
    before = step(page, "email_3").bounding_box()
    page.mouse.move(before["x"] + 20, before["y"] + 20)
    page.mouse.down()
    page.mouse.move(before["x"] + 280, before["y"] + 40, steps=6)
    page.mouse.up()
    expect(page.locator("#builder-status")).to_have_text("Unsaved changes")
    assert page.evaluate(OVERLAPPING) == []
    assert page.evaluate(LEAVING)  # leaving the page now asks first
    session.screenshot("drip-builder-mouse-built")

    expect(page.locator("#steps tbody tr")).to_have_count(1)  # the draft as it was opened
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#builder-status")).to_have_text("Saved")
    assert not page.evaluate(LEAVING)
    # The table under the drawing lists the steps just saved.
    expect(page.locator("#steps tbody tr")).to_have_count(6)
    expect(page.locator("#step-email_3")).to_contain_text("Did you see this?")
    saved = stored(api, campaign_id)
    assert structure(saved) == welcome_series(mailings)
    moved = next(n for n in saved["nodes"] if n["id"] == "email_3")
    assert moved["position"]["x"] >= 100  # where it was dropped, not laid out again
    assert all("position" not in n for n in saved["nodes"] if n["id"] != "email_3")
    # Opened again, it is the same series, laid out from the trigger down.
    page.reload()
    expect(page.locator(".bnode")).to_have_count(6)
    assert page.evaluate(OVERLAPPING) == []
    trigger_box = step(page, "trigger").bounding_box()
    assert all(step(page, n).bounding_box()["y"] > trigger_box["y"] for n in ("email_1", "email_2"))
    assert violations(page) == []
    api.close()


def test_the_same_series_built_with_the_keyboard_alone(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, mailings = mailings_and_list(api)
    campaign_id = empty_campaign(api, list_id, "Keyboard series")
    page = session.go(f"/drips/{campaign_id}")
    keys = page.keyboard

    def add(kind: str) -> None:
        page.get_by_role("button", name=kind, exact=True).press("Enter")

    # The steps take one Tab stop, right after the toolbar; Enter selects one.
    page.get_by_role("button", name="Save").focus()
    keys.press("Tab")
    expect(step(page, "trigger")).to_be_focused()
    keys.press("Enter")
    expect(panel(page)).to_contain_text("Trigger trigger")
    add("Email")
    expect(step(page, "email_1")).to_be_focused()  # the new step, connected after the trigger
    keys.press("Tab")
    expect(panel(page).get_by_label("Mailing")).to_be_focused()
    panel(page).get_by_label("Mailing").select_option(label="Welcome aboard")
    add("Delay")
    keys.press("Tab")
    expect(panel(page).get_by_label("Wait")).to_be_focused()
    keys.press("Control+A")
    keys.type("2")
    keys.press("Tab")
    expect(panel(page).get_by_label("Unit")).to_be_focused()  # focus stays in the panel
    add("Condition")
    keys.press("Tab")
    panel(page).get_by_label("Check").select_option("clicked")
    add("Email")
    keys.press("Tab")
    panel(page).get_by_label("Mailing").select_option(label="Three tips")
    # Back to the condition with the arrow keys, and its "no" branch gets the next email.
    step(page, "email_2").press("ArrowUp")
    expect(step(page, "condition_1")).to_be_focused()
    expect(panel(page)).to_contain_text("Condition condition_1")
    add("Email")
    keys.press("Tab")
    panel(page).get_by_label("Mailing").select_option(label="Did you see this?")
    # An exit added by mistake: Delete removes it, Ctrl+Z brings it back, Ctrl+Shift+Z not.
    add("Exit")
    expect(step(page, "exit_1")).to_be_focused()
    keys.press("Delete")
    expect(step(page, "exit_1")).to_have_count(0)
    keys.press("Control+Z")
    expect(step(page, "exit_1")).to_have_count(1)
    keys.press("Control+Shift+Z")
    expect(step(page, "exit_1")).to_have_count(0)
    # A connection removed in the panel, and made again with its "next step" choice.
    step(page, "condition_1").press("Enter")
    panel(page).get_by_role("button", name="Remove connection (no) to email_3").press("Enter")
    expect(page.locator("g.link")).to_have_count(4)
    step(page, "delay_1").press("ArrowDown")
    expect(step(page, "condition_1")).to_be_focused()
    step(page, "condition_1").press("Enter")
    panel(page).get_by_label("Next step (no)").select_option("email_3")
    expect(page.locator("g.link")).to_have_count(5)
    session.screenshot("drip-builder-keyboard-built")
    page.get_by_role("button", name="Save").press("Enter")
    expect(page.locator("#builder-status")).to_have_text("Saved")
    assert structure(stored(api, campaign_id)) == welcome_series(mailings)
    api.close()


def test_a_refused_graph_is_shown_on_the_step_it_names(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, mailings = mailings_and_list(api)
    welcome, tips, nudge = (mailings[s] for s in SUBJECTS)
    nodes = graph(
        [
            node("t", "trigger"),
            node("welcome", "email", campaign_mailing_id=welcome),
            node("opened", "condition", check="opened", node="welcome"),
            node("tips", "email", campaign_mailing_id=tips),
            node("nudge", "email", campaign_mailing_id=nudge),
        ],
        [
            edge("t", "welcome"),
            edge("welcome", "opened"),
            edge("opened", "tips", "yes"),
            edge("opened", "nudge", "no"),
        ],
    )
    body = {
        "drip_campaign": {
            "name": "Made by a program",
            "subscription_list_id": list_id,
            "start_trigger": "existing",
            "drip_campaign_nodes": nodes,
        }
    }
    campaign_id = api.call("POST", "/drip_campaigns", body)["data"]["id"]
    before = stored(api, campaign_id)
    page = session.go(f"/drips/{campaign_id}")
    # Every step had position {x: 0, y: 0}: they are laid out, not piled up.
    boxes = [step(page, n).bounding_box() for n in ("t", "welcome", "opened", "tips", "nudge")]
    assert len({(b["x"], b["y"]) for b in boxes}) == 5
    session.screenshot("drip-builder-from-api")
    # Select the "no" arrow and delete it; the server refuses the graph.
    page.locator('g.link[data-edge="3"] path.link-hit').click(force=True)
    expect(panel(page)).to_contain_text("From Condition opened (no) to Email nudge.")
    page.keyboard.press("Delete")
    expect(page.locator("g.link")).to_have_count(3)
    page.get_by_role("button", name="Save").click()
    problem = "condition node 'opened' has no 'no' edge"
    summary = page.locator("#builder-errors")
    expect(summary).to_be_visible()
    expect(summary).to_contain_text(problem)
    expect(step(page, "opened")).to_have_class(re.compile(r"\binvalid\b"))
    expect(step(page, "opened")).to_contain_text(problem)
    expect(page.locator("#builder-status")).to_have_text("Unsaved changes")
    session.screenshot("drip-builder-refused")
    summary.get_by_role("link").click()
    expect(step(page, "opened")).to_be_focused()
    assert stored(api, campaign_id) == before
    assert violations(page) == []
    api.close()


def test_every_kind_of_step_is_edited_in_the_panel_into_data_the_server_takes(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, mailings = mailings_and_list(api)
    campaign_id = empty_campaign(api, list_id, "Every kind")
    page = session.go(f"/drips/{campaign_id}")
    side = panel(page)

    def add(kind: str) -> None:
        page.get_by_role("button", name=kind, exact=True).click()

    def commit(label: str, value: str) -> None:
        side.get_by_label(label, exact=True).fill(value)
        side.get_by_label(label, exact=True).press("Tab")

    step(page, "trigger").click()
    add("Wait until")
    commit("Time of day", "10:30")
    side.get_by_label("Mon").check()
    side.get_by_label("Fri").check()
    commit("Time zone (optional)", "Europe/Berlin")
    add("Split")
    commit("Weight a", "30")
    commit("Weight b", "70")
    add("Action")  # on a
    side.get_by_label("Do").select_option("set_field")
    commit("Custom field", "stage")
    commit("Value", "lead")
    step(page, "split_1").click()
    add("Action")  # on b
    side.get_by_label("List").select_option(label="News")
    add("Condition")
    side.get_by_label("Check").select_option("field")
    commit("Field", "first_name")
    side.get_by_label("Test").select_option("contains")
    commit("Value", "A")
    add("Exit")  # on yes
    step(page, "condition_1").click()
    add("Email")  # on no
    side.get_by_label("Mailing").select_option(label="Welcome aboard")
    expect(step(page, "wait_until_1")).to_contain_text("10:30 Mon, Fri (Europe/Berlin)")
    session.screenshot("drip-builder-every-kind")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#builder-status")).to_have_text("Saved")
    steps, edges = structure(stored(api, campaign_id))
    assert steps == {
        "trigger": ("trigger", {}),
        "wait_until_1": (
            "wait_until",
            {"time": "10:30", "weekdays": [0, 4], "timezone": "Europe/Berlin"},
        ),
        "split_1": ("split", {"weights": {"a": 30, "b": 70}}),
        "action_1": ("action", {"do": "set_field", "name": "custom.stage", "value": "lead"}),
        "action_2": ("action", {"do": "add_to_list", "list_id": list_id}),
        "condition_1": (
            "condition",
            {"check": "field", "name": "first_name", "op": "contains", "value": "A"},
        ),
        "exit_1": ("exit", {}),
        "email_1": ("email", {"campaign_mailing_id": mailings["Welcome aboard"]}),
    }
    assert edges == {
        ("trigger", "wait_until_1", None),
        ("wait_until_1", "split_1", None),
        ("split_1", "action_1", "a"),
        ("split_1", "action_2", "b"),
        ("action_2", "condition_1", None),
        ("condition_1", "exit_1", "yes"),
        ("condition_1", "email_1", "no"),
    }
    api.close()


def test_a_step_placed_by_hand_is_never_covered_by_one_laid_out(
    dashboard: Callable[..., Session],
) -> None:
    session = dashboard(Role.EDITOR)
    api = TeamApi(session.base_url, session.team)
    list_id, mailings = mailings_and_list(api)
    welcome, tips, nudge = (mailings[s] for s in SUBJECTS)
    nodes = [
        node("t", "trigger"),
        node("welcome", "email", campaign_mailing_id=welcome),
        node("opened", "condition", check="opened", node="welcome"),
        node("tips", "email", campaign_mailing_id=tips),
        node("nudge", "email", campaign_mailing_id=nudge),
    ]
    edges = [
        edge("t", "welcome"),
        edge("welcome", "opened"),
        edge("opened", "tips", "yes"),
        edge("opened", "nudge", "no"),
    ]
    campaign_id = empty_campaign(api, list_id, "Placed by hand")
    page = session.go(f"/drips/{campaign_id}")
    # All steps are laid out; then "nudge" is put by hand just where "tips" was laid out.
    api.call("PUT", f"/drip_campaigns/{campaign_id}", changed(nodes, edges))
    page.reload()
    spot = step(page, "tips").evaluate("b => ({x: b.offsetLeft, y: b.offsetTop})")
    nodes[4]["position"] = spot
    api.call("PUT", f"/drip_campaigns/{campaign_id}", changed(nodes, edges))
    page.reload()
    expect(page.locator(".bnode")).to_have_count(5)
    assert step(page, "nudge").evaluate("b => ({x: b.offsetLeft, y: b.offsetTop})") == spot
    assert page.evaluate(OVERLAPPING) == []
    # Steps added after the condition's branches land clear of both.
    step(page, "tips").click()
    page.get_by_role("button", name="Exit", exact=True).click()
    step(page, "nudge").click()
    page.get_by_role("button", name="Delay", exact=True).click()
    expect(page.locator(".bnode")).to_have_count(7)
    assert page.evaluate(OVERLAPPING) == []
    session.screenshot("drip-builder-placed-by-hand")
    api.close()
