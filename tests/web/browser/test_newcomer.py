"""The README's first steps, end to end in a real browser: an account and an owner made with
the CLI lines the README gives, a sign-in with the password printed, a CSV imported, a mailing
written and sent to the imported subscribers, its progress and analytics read on its page."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path

from playwright.sync_api import Browser, expect

from tests.delivery.smtp_server import SmtpTestServer
from tests.processes import DRIPSTONE, wait_until
from tests.web.browser.conftest import SCREENSHOTS, LiveServer


def _cli(live_server: LiveServer, *args: str) -> str:
    """A `dripstone` command on the live server's database; its last line of output."""
    env = {
        **os.environ,
        "DRIPSTONE_DATABASE_URL": live_server.database.url,
        "DRIPSTONE_DATA_DIR": str(live_server.data_dir),
    }
    done = subprocess.run(
        [DRIPSTONE, *args], env=env, capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip().splitlines()[-1]


def test_a_newcomer_imports_sends_and_reads_the_analytics_in_the_browser(
    browser: Browser,
    live_server: LiveServer,
    shared_smtp_server: SmtpTestServer,
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:10]
    account, owner = f"acme{tag}", f"ann@{tag}.example.com"
    _cli(live_server, "accounts", "create", account)
    # --account: the live server holds other tests' accounts too; a newcomer's has one.
    password = _cli(
        live_server, "users", "create", "ann", owner, "--role", "owner", "--account", account
    )

    context = browser.new_context(base_url=live_server.base_url)
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/")
    page.get_by_label("Email").fill(owner)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")

    people = [f"reader{n}-{tag}@example.com" for n in range(3)]
    csv = tmp_path / "contacts.csv"
    csv.write_text("email,first name\n" + "".join(f"{a},Reader{n}\n" for n, a in enumerate(people)))
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Import").click()
    page.get_by_label("CSV file", exact=True).set_input_files(str(csv))
    page.get_by_role("button", name="Upload and map the columns").click()
    page.get_by_role("button", name="Start the import of 3 rows").click()
    expect(page.get_by_role("heading", name="Import finished")).to_be_visible(timeout=60_000)
    expect(page.locator('[data-count="added"]')).to_have_text("3")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mailings").click()
    page.get_by_role("link", name="New mailing").click()
    page.get_by_label("Subject").fill("Welcome, {{ first_name }}")
    page.get_by_label("HTML source").fill(
        '<p>Hello {{ first_name }}, read <a href="https://example.com/guide">the guide</a>.</p>'
    )
    page.get_by_role("button", name="Create mailing").click()
    page.get_by_label("List or segment", exact=True).select_option(label="All contacts")
    page.get_by_role("button", name="Review the send").click()
    expect(page.locator("#audience")).to_have_text("3 subscribers")
    page.get_by_role("button", name="Send now").click()

    expect(page).to_have_url(re.compile(r"/sends/[0-9a-f-]{36}$"))
    expect(page.get_by_text("3 of 3 (100 %)")).to_be_visible(timeout=60_000)
    wait_until(
        lambda: all(
            any(address in m.rcpt_tos for m in list(shared_smtp_server.handler.messages))
            for address in people
        ),
        "the three welcomes at the SMTP server",
        30,
    )
    page.reload()
    expect(page.get_by_role("heading", name="Totals")).to_be_visible()
    expect(page.get_by_role("link", name=people[0])).to_be_visible()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "newcomer-send-analytics.png"), full_page=True)
    assert errors == []
    context.close()
