"""What recipients do: the open pixel, the click redirect and unsubscribe, through signed URLs
taken from the messages a real SMTP server received."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from dripstone import clock, db
from dripstone.delivery.signing import TrackingTokens
from dripstone.tracking.models import TrackingEvent
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import (
    add_subscribers,
    html_of,
    make_list,
    make_mailing,
    ok,
    send,
    subscriber_id,
    to,
)

Tick = Callable[[], None]


@pytest.fixture
def sent(
    api: Api, smtp_server: SmtpTestServer, run_tick: Tick, manual_clock: clock.ManualClock
) -> tuple[str, str]:
    """A mailing sent to the list News (alex, blake); returns (list id, alex's HTML)."""
    list_id = make_list(api, "News")
    add_subscribers(api, list_id, [{"email": "alex@example.com"}, {"email": "blake@example.com"}])
    send(api, make_mailing(api), list_id)
    for _ in range(3):
        run_tick()
        manual_clock.advance(timedelta(seconds=3))
    run_tick()
    (alex,) = to(smtp_server.messages, "alex@example.com")
    return list_id, html_of(alex)


def path(url: str) -> str:
    return urlsplit(url).path


def events(database: db.Database) -> list[tuple[str, int | None, str | None]]:
    with database.read_sessions() as session:
        rows = session.execute(
            select(TrackingEvent.kind, TrackingEvent.html_id, TrackingEvent.url).order_by(
                TrackingEvent.id
            )
        )
        return [(kind, html_id, url) for kind, html_id, url in rows]


def mailing_counts(api: Api) -> dict[str, int]:
    attributes = ok(api.get("/campaign_mailings"))["data"][0]["attributes"]
    return {k: v for k, v in attributes.items() if k.endswith("_count")}


def test_a_click_is_recorded_and_redirects_to_the_link(
    api: Api, client: TestClient, database: db.Database, sent: tuple[str, str]
) -> None:
    _, html = sent
    clicks = re.findall(r'href="(https://mail\.example\.com/t/c/[^"]+)"', html)

    response = client.get(path(clicks[1]), follow_redirects=False)

    assert response.status_code == 302
    assert response.headers["location"] == "https://blog.example.com/post?id=1"
    assert events(database) == [("click", 2, "https://blog.example.com/post?id=1")]
    counts = mailing_counts(api)
    assert (counts["clicked_count"], counts["viewed_count"]) == (1, 1)


def test_the_open_pixel_is_a_gif_and_records_one_open_per_delivery_in_the_counts(
    api: Api, client: TestClient, database: db.Database, sent: tuple[str, str]
) -> None:
    _, html = sent
    pixel = re.search(r'<img src="(https://mail\.example\.com/t/o/[^"]+)"', html)
    assert pixel is not None

    first = client.get(path(pixel.group(1)))
    again = client.get(path(pixel.group(1)))

    assert first.status_code == again.status_code == 200
    assert first.headers["content-type"] == "image/gif"
    gif = first.content
    assert gif[:6] == b"GIF89a"
    assert gif[6:10] == b"\x01\x00\x01\x00"
    assert gif[-1:] == b";"
    assert events(database) == [("open", None, None), ("open", None, None)]
    assert mailing_counts(api)["viewed_count"] == 1


@pytest.mark.parametrize("route", ["/t/c/", "/t/o/", "/t/u/"])
def test_tampered_unsigned_and_foreign_tokens_are_404_and_never_redirect(
    client: TestClient, database: db.Database, sent: tuple[str, str], route: str
) -> None:
    _, html = sent
    prefix = re.escape("https://mail.example.com" + route)
    # The genuine token of this route, as its path (the open pixel's is not a link).
    genuine = route + re.findall(prefix + r'([^"]+)"', html)[0] if route != "/t/o/" else ""
    foreign = TrackingTokens("another-installation-secret-0123456789abcdef", "https://x.test")
    suffix = ".gif" if route == "/t/o/" else ""
    candidates = [
        route + "abc" + suffix,
        route + foreign.click_token(1, 1, "https://evil.example") + suffix,
        route + foreign.open_token(1) + suffix,
        route + foreign.unsubscribe_token(1) + suffix,
    ]
    if genuine:
        candidates.append(genuine[:-3] + ("AAA" if genuine[-3:] != "AAA" else "BBB"))
    candidates += [route + "abc.png", route, route + "a/b"]  # paths no route matches
    for candidate in candidates:
        response = client.get(candidate, follow_redirects=False)
        assert response.status_code == 404, candidate
        assert "location" not in response.headers
        # A recipient gets a small page, not the API's envelope and its hint about API paths.
        assert response.headers["content-type"].startswith("text/html"), candidate
        assert "<h1>" in response.text
        assert "/v1/" not in response.text
        assert "API" not in response.text
    assert events(database) == []


def test_unsubscribe_page_asks_first_and_one_click_post_leaves_the_list(
    api: Api,
    client: TestClient,
    database: db.Database,
    smtp_server: SmtpTestServer,
    sent: tuple[str, str],
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> None:
    list_id, html = sent
    link = re.search(r'href="(https://mail\.example\.com/t/u/[^"]+)"', html)
    assert link is not None
    alex = subscriber_id(api, "alex@example.com")

    page = client.get(path(link.group(1)))
    assert page.status_code == 200
    assert "alex@example.com" in page.text
    assert "News" in page.text
    assert "<form method=post>" in page.text
    lists = ok(api.get(f"/subscribers/{alex}"))["data"]["attributes"]["subscription_lists"]
    assert {(entry["name"], entry["unsubscribed"]) for entry in lists} == {
        ("All contacts", False),
        ("News", False),
    }

    # What a mail client sends for RFC 8058 one-click.
    done = client.post(
        path(link.group(1)),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    lists = ok(api.get(f"/subscribers/{alex}"))["data"]["attributes"]["subscription_lists"]
    assert {(entry["name"], entry["unsubscribed"]) for entry in lists} == {
        ("All contacts", False),
        ("News", True),
    }
    assert ok(api.get(f"/subscribers/{alex}"))["data"]["attributes"]["unsubscribed"] is False
    assert events(database) == [("unsubscribe", None, None)]
    assert mailing_counts(api)["unsubscribed_count"] == 1

    smtp_server.messages.clear()
    send(api, make_mailing(api, subject="Second"), list_id)
    run_tick()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["blake@example.com"]]


def test_unsubscribing_from_a_send_to_all_contacts_opts_out_of_all_mail(
    api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
) -> None:
    add_subscribers(api, None, [{"email": "alex@example.com"}])
    everyone = next(
        lst["id"]
        for lst in ok(api.get("/subscription_lists"))["data"]
        if lst["attributes"]["is_default"]
    )
    send(api, make_mailing(api), everyone)
    run_tick()
    (message,) = to(smtp_server.messages, "alex@example.com")
    link = re.search(r'href="(https://mail\.example\.com/t/u/[^"]+)"', html_of(message))
    assert link is not None

    assert "all our emails" in client.get(path(link.group(1))).text
    assert client.post(path(link.group(1))).status_code == 200

    alex = subscriber_id(api, "alex@example.com")
    assert ok(api.get(f"/subscribers/{alex}"))["data"]["attributes"]["unsubscribed"] is True
