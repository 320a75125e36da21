"""Every dashboard page passes axe-core's WCAG 2.1 A and AA rules (contrast included), at
desktop and at phone width."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page

from dripstone.users.models import Role
from tests.web.browser.conftest import LiveServer, Session

AXE = Path(__file__).parent / "axe" / "axe.min.js"
RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
PAGES = [
    "/",
    "/subscribers",
    "/lists",
    "/imports",
    "/exports",
    "/mailings",
    "/sends",
    "/drips",
    "/settings",
    "/settings/audit",
]


def test_axe_is_the_version_its_package_file_pins() -> None:
    pinned = json.loads((AXE.parent / "package.json").read_text())["dependencies"]["axe-core"]
    assert f"axe v{pinned}" in AXE.read_text()[:200]


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's findings on the page as it is now (run through the DevTools protocol, which
    the page's Content-Security-Policy does not govern)."""
    page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = page.evaluate(
        "async (rules) => (await axe.run(document, {runOnly: rules})).violations", RULES
    )
    return [
        {"rule": v["id"], "impact": v["impact"], "where": [n["target"] for n in v["nodes"]][:5]}
        for v in found
    ]


def test_the_check_finds_a_missing_label_and_faint_text(browser: Browser) -> None:
    page = browser.new_page()
    page.set_content(
        '<html lang="en"><title>t</title><main><p style="color:#bbb">faint</p>'
        "<input type=text></main></html>"
    )
    assert {v["rule"] for v in violations(page)} >= {"color-contrast", "label"}
    page.close()


def test_the_sign_in_page_is_accessible(browser: Browser, live_server: LiveServer) -> None:
    context = browser.new_context(base_url=live_server.base_url)
    page = context.new_page()
    page.goto("/sign-in")
    assert violations(page) == []
    context.close()


@pytest.mark.parametrize("width", [1280, 390], ids=["desktop", "phone"])
def test_every_page_is_accessible(dashboard: Callable[..., Session], width: int) -> None:
    session = dashboard(Role.OWNER, width=width)
    found = {}
    for path in PAGES:
        session.go(path)
        if problems := violations(session.page):
            found[path] = problems
    assert found == {}
