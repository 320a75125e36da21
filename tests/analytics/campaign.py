"""A campaign really sent through the SMTP fixture, then opened, clicked and left through
the tracking URLs in the messages, as recipients would."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from dripstone import clock
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import add_subscribers, html_of, make_mailing, ok, send, to

PEOPLE = [
    {
        "email": "alex@example.com",
        "first_name": "Alex",
        "last_name": "Ames",
        "custom_fields": [{"plan": '=HYPERLINK("https://evil.test")'}],
    },
    {"email": "blake@example.com", "first_name": "+Blake", "custom_fields": [{"plan": "gold"}]},
    {"email": "casey@example.com", "custom_fields": [{"plan": "basic"}]},
    {"email": "dana@example.com", "custom_fields": [{"plan": "basic"}]},
    {"email": "erin@example.com", "custom_fields": [{"plan": "basic"}]},
]
SALE = "https://shop.example.com/sale"  # html_id 1 (twice in the HTML)
POST = "https://blog.example.com/post?id=1"  # html_id 2


@dataclass
class Campaign:
    send_id: str
    mailing_id: str
    list_id: str


def path(url: str) -> str:
    return urlsplit(url).path


def default_list(api: Api) -> str:
    lists = ok(api.get("/subscription_lists"))["data"]
    return str(next(lst["id"] for lst in lists if lst["attributes"]["is_default"]))


def sent_campaign(
    api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: object,
    manual_clock: clock.ManualClock,
    subject: str = "Hello {{ first_name }}",
) -> Campaign:
    """Sent to all contacts: dana's address bounces for good; then alex opens and clicks the
    sale link twice and the post once, blake clicks the post (without loading images),
    casey opens and unsubscribes, erin does nothing."""
    assert callable(run_tick)
    smtp_server.replies["dana@example.com"] = "550 5.1.1 No such user"
    everyone = default_list(api)
    add_subscribers(api, None, PEOPLE)
    mailing_id = make_mailing(api, subject=subject)
    send_id = send(api, mailing_id, everyone)["campaign_mailing_send_id"]
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()

    def links(address: str) -> tuple[str, list[str], str]:
        (message,) = to(smtp_server.messages, address)
        html = html_of(message)
        pixel = re.search(r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', html)
        clicks = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', html)
        unsubscribe = re.search(r'href="(https://mail\.example\.com/t/u/[^"]+)"', html)
        assert pixel is not None
        assert unsubscribe is not None
        return path(pixel.group(1)), [path(c) for c in clicks], path(unsubscribe.group(1))

    alex_pixel, alex_clicks, _ = links("alex@example.com")
    manual_clock.advance(timedelta(minutes=5))
    assert client.get(alex_pixel).status_code == 200
    for click in (alex_clicks[0], alex_clicks[2], alex_clicks[1]):  # sale, sale again, post
        assert client.get(click, follow_redirects=False).status_code == 302
    _, blake_clicks, _ = links("blake@example.com")
    assert client.get(blake_clicks[1], follow_redirects=False).status_code == 302
    casey_pixel, _, casey_unsubscribe = links("casey@example.com")
    assert client.get(casey_pixel).status_code == 200
    assert client.post(casey_unsubscribe).status_code == 200
    return Campaign(send_id=send_id, mailing_id=mailing_id, list_id=everyone)
