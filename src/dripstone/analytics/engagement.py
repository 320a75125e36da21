"""Who opened or clicked: a person, or a machine acting for the mailbox.

Pure rules, no database: what a tracking hit reveals in, a verdict out. The rules, in order
(the first that applies decides):

Opens
    apple_privacy   fetched by Apple Mail Privacy Protection: a bare "Mozilla/5.0" user agent
                    from Apple's 17.0.0.0/8. Apple fetches every image of every message when
                    it arrives, read or not.
    no_user_agent   no user agent at all: mail clients name themselves.
    scanner         a user agent of a known security scanner, crawler or HTTP library.
    too_soon        within OPEN_WINDOW_SECONDS of the message being accepted: nobody reads
                    that fast; gateways and proxies that prefetch do.
    otherwise human. Gmail's and Yahoo's image proxies (by user agent) and Microsoft's mail
    servers (by address) fetch an image when the message is displayed, so their opens are
    human unless a rule above applies; the proxy is still recorded.

Clicks
    no_user_agent   no user agent at all.
    scanner         a known security scanner, link-preview fetcher or HTTP library, or
                    Microsoft's mail protection servers (by address), which follow every link.
    too_soon        within CLICK_WINDOW_SECONDS of the message being accepted.
    burst           BURST_LINKS or more different links of one message clicked within the
                    same second: scanners follow every link; people follow one.
    otherwise human.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import re2

OPEN_WINDOW_SECONDS = 2.0
CLICK_WINDOW_SECONDS = 10.0
BURST_LINKS = 3

HUMAN, APPLE_PRIVACY, NO_USER_AGENT, SCANNER, TOO_SOON, BURST = (
    None,
    "apple_privacy",
    "no_user_agent",
    "scanner",
    "too_soon",
    "burst",
)

GMAIL, YAHOO, APPLE, MICROSOFT = "gmail", "yahoo", "apple", "microsoft"

_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
# Microsoft's mail protection (Exchange Online Protection): its servers fetch images and
# follow links to check them before the reader sees the message.
_MICROSOFT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17")
)
_PROXY_AGENTS = (
    (GMAIL, re2.compile(r"(?i)GoogleImageProxy|ggpht\.com")),
    (YAHOO, re2.compile(r"(?i)YahooMailProxy")),
)
_SCANNERS = re2.compile(
    r"(?i)barracuda|mimecast|proofpoint|urldefense|safelinks|symantec|messagelabs|trendmicro"
    r"|forcepoint|sophos|fortinet|cisco|ironport|zscaler|bingpreview|slackbot|facebookexternalhit"
    r"|skypeuripreview|python|curl/|wget|go-http-client|java/|okhttp|apache-httpclient|libwww"
    r"|headlesschrome|phantomjs|bot\b|bot/|crawler|spider|scanner"
)


@dataclass(frozen=True)
class Seen:
    """What one hit tells: the client's user agent and address, and how long after the
    message was accepted it came (None when unknown)."""

    user_agent: str | None
    remote_addr: str | None
    seconds_after_send: float | None
    # Clicks only: how many different links of the same message were clicked in that second.
    links_in_same_second: int = 1


@dataclass(frozen=True)
class Verdict:
    machine: bool
    reason: str | None  # which rule decided; None for a person
    proxy: str | None  # the image proxy it came through, if a known one


def image_proxy(user_agent: str | None, remote_addr: str | None) -> str | None:
    """The known image proxy a hit came through, by its user agent or address."""
    agent = user_agent or ""
    for name, pattern in _PROXY_AGENTS:
        if pattern.search(agent):
            return name
    address = _address(remote_addr)
    if address is None:
        return None
    if address in _APPLE_NETWORK:
        return APPLE
    if any(address in network for network in _MICROSOFT_NETWORKS):
        return MICROSOFT
    return None


def judge_open(seen: Seen) -> Verdict:
    """Whether an open was a person reading the message or a machine fetching its images."""
    proxy = image_proxy(seen.user_agent, seen.remote_addr)
    agent = (seen.user_agent or "").strip()
    if proxy == APPLE and agent in ("", "Mozilla/5.0"):
        return Verdict(True, APPLE_PRIVACY, proxy)
    if not agent:
        return Verdict(True, NO_USER_AGENT, proxy)
    if _SCANNERS.search(agent):
        return Verdict(True, SCANNER, proxy)
    if _too_soon(seen.seconds_after_send, OPEN_WINDOW_SECONDS):
        return Verdict(True, TOO_SOON, proxy)
    return Verdict(False, HUMAN, proxy)


def judge_click(seen: Seen) -> Verdict:
    """Whether a click was a person following a link or a bot fetching it."""
    proxy = image_proxy(seen.user_agent, seen.remote_addr)
    agent = (seen.user_agent or "").strip()
    if not agent:
        return Verdict(True, NO_USER_AGENT, proxy)
    if _SCANNERS.search(agent) or proxy == MICROSOFT:
        return Verdict(True, SCANNER, proxy)
    if _too_soon(seen.seconds_after_send, CLICK_WINDOW_SECONDS):
        return Verdict(True, TOO_SOON, proxy)
    if seen.links_in_same_second >= BURST_LINKS:
        return Verdict(True, BURST, proxy)
    return Verdict(False, HUMAN, proxy)


def _too_soon(seconds: float | None, window: float) -> bool:
    return seconds is not None and seconds < window


def _address(remote_addr: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not remote_addr:
        return None
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address
