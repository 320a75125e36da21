"""The rules that tell a person's opens and clicks from a machine's."""

from __future__ import annotations

import pytest

from dripstone.analytics.engagement import (
    APPLE,
    APPLE_PRIVACY,
    BURST,
    GMAIL,
    MICROSOFT,
    NO_USER_AGENT,
    SCANNER,
    TOO_SOON,
    YAHOO,
    Seen,
    image_proxy,
    judge_click,
    judge_open,
)

BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Safari/605.1.15"
)
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) AppleWebKit/605.1.15 (KHTML, like Gecko)"
GMAIL_PROXY = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
LATER = 3600.0


@pytest.mark.parametrize(
    ("user_agent", "address", "proxy"),
    [
        (GMAIL_PROXY, "66.249.84.10", GMAIL),
        ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", None, YAHOO),
        ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126)", None, None),
        (BROWSER, "40.107.22.5", MICROSOFT),
        ("Mozilla/5.0", "17.58.63.4", APPLE),
        ("Mozilla/5.0", "::ffff:17.58.63.4", APPLE),
        (BROWSER, "18.58.63.4", None),
        (BROWSER, "not an address", None),
        (None, None, None),
    ],
)
def test_image_proxies_are_known_by_user_agent_or_address(
    user_agent: str | None, address: str | None, proxy: str | None
) -> None:
    assert image_proxy(user_agent, address) == proxy


def test_apple_privacy_prefetches_are_machine_opens_whenever_they_come() -> None:
    verdict = judge_open(Seen("Mozilla/5.0", "17.58.63.4", LATER))
    assert (verdict.machine, verdict.reason, verdict.proxy) == (True, APPLE_PRIVACY, APPLE)


def test_a_mac_reading_the_message_from_apples_network_is_a_person() -> None:
    verdict = judge_open(Seen(APPLE_MAIL, "17.58.63.4", LATER))
    assert (verdict.machine, verdict.proxy) == (False, APPLE)


def test_gmail_proxy_opens_are_people_unless_they_come_at_delivery() -> None:
    later = judge_open(Seen(GMAIL_PROXY, "66.249.84.10", LATER))
    at_once = judge_open(Seen(GMAIL_PROXY, "66.249.84.10", 0.5))
    assert (later.machine, later.proxy) == (False, GMAIL)
    assert (at_once.machine, at_once.reason, at_once.proxy) == (True, TOO_SOON, GMAIL)


@pytest.mark.parametrize(
    ("seen", "reason"),
    [
        (Seen(None, None, LATER), NO_USER_AGENT),
        (Seen("  ", None, LATER), NO_USER_AGENT),
        (Seen("Mozilla/5.0 (compatible; Barracuda Sentinel)", None, LATER), SCANNER),
        (Seen(BROWSER, None, 1.9), TOO_SOON),
    ],
)
def test_machine_opens(seen: Seen, reason: str) -> None:
    verdict = judge_open(seen)
    assert (verdict.machine, verdict.reason) == (True, reason)


@pytest.mark.parametrize("seen", [Seen(BROWSER, "192.0.2.1", 2.0), Seen(BROWSER, None, None)])
def test_people_open(seen: Seen) -> None:
    assert judge_open(seen).machine is False


@pytest.mark.parametrize(
    ("seen", "reason"),
    [
        (Seen(None, None, LATER), NO_USER_AGENT),
        (Seen("python-requests/2.31", None, LATER), SCANNER),
        (Seen("curl/8.4.0", None, LATER), SCANNER),
        (Seen("Mozilla/5.0 (compatible; Proofpoint URL Defense)", None, LATER), SCANNER),
        (
            Seen("Mozilla/5.0 (Windows NT 10.0) Chrome/120 Safari/537.36 bingpreview", None, 9e3),
            SCANNER,
        ),
        (Seen(BROWSER, "40.107.22.5", LATER), SCANNER),
        (Seen(BROWSER, None, 9.9), TOO_SOON),
        (Seen(BROWSER, None, LATER, links_in_same_second=3), BURST),
    ],
)
def test_bot_clicks(seen: Seen, reason: str) -> None:
    verdict = judge_click(seen)
    assert (verdict.machine, verdict.reason) == (True, reason)


@pytest.mark.parametrize(
    "seen",
    [
        Seen(BROWSER, None, 10.0),
        Seen(BROWSER, None, LATER, links_in_same_second=2),
        # A person on a Mac clicking from Apple's network: the address says nothing of clicks.
        Seen(BROWSER, "17.58.63.4", LATER),
    ],
)
def test_people_click(seen: Seen) -> None:
    assert judge_click(seen).machine is False
