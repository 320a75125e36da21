"""The analytics endpoints after a real send: totals, tables and tracking links agree with
each other and with the send's own counts, page and sort as documented, export CSV that no
spreadsheet evaluates, refuse bad input with a 400 naming the field, and show one account
nothing of another's."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from dripstone import clock, db
from dripstone.delivery.models import Delivery, DeliveryStatus, due_delivery
from dripstone.delivery.pipeline import pipeline
from dripstone.mailings.models import CampaignMailingSend
from dripstone.tracking.models import TrackingEvent
from tests.analytics.campaign import POST, SALE, Campaign, sent_campaign
from tests.conftest import Api
from tests.delivery.smtp_server import SmtpTestServer
from tests.mailings.helpers import ok, send

Tick = Callable[[], None]
TOTALS = "/analytics/campaign_mailing_send_totals"
SENDS = "/analytics/campaign_mailing_sends_table"
LINKS = "/analytics/tracking_links_by_unique_link"
CLICKERS = "/analytics/subscribers_by_tracking_link"
DELIVERIES = "/analytics/campaign_mailing_deliveries_table"
TRACKING_LINKS = "/tracking_links"
UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def campaign(
    api: Api,
    client: TestClient,
    smtp_server: SmtpTestServer,
    run_tick: Tick,
    manual_clock: clock.ManualClock,
) -> Campaign:
    return sent_campaign(api, client, smtp_server, run_tick, manual_clock)


def data(api: Api, route: str, **params: Any) -> Any:
    return ok(api.get(route, params=params))["data"]


def by_recipient(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row.pop("recipient"): row for row in rows}


def test_totals_count_each_recipient_once_and_agree_with_the_send(
    api: Api, campaign: Campaign
) -> None:
    totals = data(api, TOTALS, campaign_mailing_send_id=campaign.send_id)

    paubox = {k: totals[k] for k in ("delivered", "viewed", "clicked", "bounced")}
    assert paubox == {"delivered": 4, "viewed": 3, "clicked": 2, "bounced": 1}
    assert (totals["soft_bounced"], totals["hard_bounced"], totals["sent"]) == (0, 1, 5)
    assert (totals["unsubscribed"], totals["global_unsubscribed"]) == (1, 1)
    assert totals["human_viewed"] + totals["machine_viewed"] == totals["viewed"]
    assert totals["human_clicked"] + totals["bot_clicked"] == totals["clicked"]
    # The account's totals are this one send's: nothing else was sent.
    assert data(api, TOTALS) == totals

    counts = data(api, f"/campaign_mailing_sends/{campaign.send_id}")["attributes"]["counts"]
    assert counts["delivered"] == totals["delivered"]
    assert counts["opened"] == totals["viewed"]
    assert counts["clicked"] == totals["clicked"]
    assert counts["soft_bounced"] + counts["hard_bounced"] == totals["bounced"]
    assert counts["unsubscribed"] == totals["unsubscribed"]
    listed = data(api, "/campaign_mailings")[0]["attributes"]
    assert (listed["viewed_count"], listed["clicked_count"]) == (3, 2)


def test_the_six_operations_agree_on_one_send(api: Api, campaign: Campaign) -> None:
    totals = data(api, TOTALS, campaign_mailing_send_id=campaign.send_id)
    links = data(api, LINKS, campaign_mailing_send_id=campaign.send_id)
    deliveries = data(api, DELIVERIES, campaign_mailing_send_id=campaign.send_id)
    tracking = data(api, TRACKING_LINKS, campaign_mailing_send_id=campaign.send_id)
    (row,) = data(api, SENDS)

    assert row["id"] == campaign.send_id
    assert row["campaign_mailing_id"] == row["marketing_email_id"] == campaign.mailing_id
    assert row["subscription_list_name"] == "All contacts"
    assert row["sent_at"].endswith("Z")
    assert sum(d["delivered"] for d in deliveries) == totals["delivered"]
    assert sum(d["viewed"] for d in deliveries) == totals["viewed"]
    assert sum(d["clicked"] for d in deliveries) == totals["clicked"]
    assert sum(d["bounced"] for d in deliveries) == totals["bounced"]
    assert sum(d["unsubscribed"] for d in deliveries) == totals["unsubscribed"]
    for link in links:
        clickers = data(api, CLICKERS, campaign_mailing_send_id=campaign.send_id, **link)
        assert len(clickers) == link["clicked"]
        of_link = [t for t in tracking if t["id"].endswith(f"-{link['html_id']}")]
        assert sum(t["attributes"]["clicked"] for t in of_link) == link["clicks"]
        assert sum(t["attributes"]["clicked"] > 0 for t in of_link) == link["clicked"]
        per_url = [int(d["tracking_links"].get(link["target_url"], "0")) for d in deliveries]
        assert sum(per_url) == link["clicks"]


def test_links_are_numbered_in_document_order_with_their_clicks(
    api: Api, campaign: Campaign
) -> None:
    links = data(api, LINKS, campaign_mailing_send_id=campaign.send_id)
    ascending = data(api, LINKS, campaign_mailing_send_id=campaign.send_id, order="asc")
    by_clicks = data(
        api, LINKS, campaign_mailing_send_id=campaign.send_id, order_by="clicked", order="asc"
    )

    assert links == [
        {"html_id": 2, "target_url": POST, "clicked": 2, "human_clicked": 2, "clicks": 2},
        {"html_id": 1, "target_url": SALE, "clicked": 1, "human_clicked": 1, "clicks": 2},
    ]
    assert ascending == links[::-1]
    assert [link["clicked"] for link in by_clicks] == [1, 2]


def test_subscribers_by_link_are_who_clicked_it_with_their_custom_values(
    api: Api, campaign: Campaign
) -> None:
    send_id = campaign.send_id
    post = data(api, CLICKERS, campaign_mailing_send_id=send_id, html_id=2, order_by="email")
    sale = data(api, CLICKERS, campaign_mailing_send_id=send_id, html_id=1)
    plan = next(f for f in data(api, "/subscriber_custom_field_types"))

    assert [s["attributes"]["email"] for s in post] == ["blake@example.com", "alex@example.com"]
    (alex,) = sale
    assert alex["type"] == "subscriber"
    assert alex["attributes"] == {
        "email": "alex@example.com",
        "first_name": "Alex",
        "last_name": "Ames",
        "custom_fields": [
            {
                "subscriber_custom_field_type_id": plan["id"],
                "value": '=HYPERLINK("https://evil.test")',
            }
        ],
    }
    assert post[0]["attributes"]["last_name"] == ""  # blake has none: a string, never null
    ascending = data(
        api, CLICKERS, campaign_mailing_send_id=send_id, html_id=2, order_by="email", order="asc"
    )
    assert ascending == post[::-1]
    assert data(api, CLICKERS, campaign_mailing_send_id=send_id, html_id=3) == []


def test_the_deliveries_table_by_send_and_by_mailing(api: Api, campaign: Campaign) -> None:
    by_send = data(api, DELIVERIES, campaign_mailing_send_id=campaign.send_id)
    by_mailing = data(api, DELIVERIES, campaign_mailing_id=campaign.mailing_id)

    assert by_mailing == by_send
    rows = by_recipient(by_send)
    flags = ("delivered", "viewed", "clicked", "bounced", "unsubscribed")
    assert {address: tuple(row[f] for f in flags) for address, row in rows.items()} == {
        "alex@example.com": (True, True, True, False, False),
        "blake@example.com": (True, True, True, False, False),
        "casey@example.com": (True, True, False, False, True),
        "dana@example.com": (False, False, False, True, False),
        "erin@example.com": (True, False, False, False, False),
    }
    assert rows["alex@example.com"]["tracking_links"] == {SALE: "2", POST: "1"}
    assert rows["blake@example.com"]["tracking_links"] == {POST: "1"}
    assert rows["erin@example.com"]["tracking_links"] == {}
    assert all(row["created_at"].endswith("Z") for row in rows.values())


def test_tracking_links_are_every_link_of_every_delivery(
    api: Api, campaign: Campaign, database: db.Database
) -> None:
    rows = data(api, TRACKING_LINKS, campaign_mailing_send_id=campaign.send_id)

    assert len(rows) == 5 * 2
    assert {row["type"] for row in rows} == {"tracking_link"}
    clicked = sorted(
        (row["attributes"]["target_url"], row["attributes"]["clicked"])
        for row in rows
        if row["attributes"]["clicked"]
    )
    assert clicked == [(POST, 1), (POST, 1), (SALE, 2)]
    for row in rows:
        attributes = row["attributes"]
        assert ("opened_at" in attributes) == (attributes["clicked"] > 0)
        assert row["id"].startswith(attributes["campaign_mailing_delivery_id"] + "-")
    # Opaque ids, in the order the deliveries were made (newest first by default).
    with database.transaction() as session:
        the_send = select(CampaignMailingSend.id).where(
            CampaignMailingSend.uuid == campaign.send_id
        )
        made = session.scalars(
            select(Delivery.id).where(Delivery.send_id == the_send.scalar_subquery())
        ).all()
    public_id = pipeline().tokens.public_id
    links = len(rows) // len(made)
    newest_first = [public_id(n) for n in sorted(made, reverse=True) for _ in range(links)]
    assert [row["attributes"]["campaign_mailing_delivery_id"] for row in rows] == newest_first
    assert not {str(n) for n in made} & set(newest_first)
    oldest_first = data(api, TRACKING_LINKS, campaign_mailing_send_id=campaign.send_id, order="asc")
    assert oldest_first == rows[::-1]


def test_items_and_page_page_the_streamed_tables(api: Api, campaign: Campaign) -> None:
    for route, params in (
        (DELIVERIES, {"campaign_mailing_send_id": campaign.send_id}),
        (TRACKING_LINKS, {"campaign_mailing_send_id": campaign.send_id}),
        (CLICKERS, {"campaign_mailing_send_id": campaign.send_id, "html_id": 2}),
        (SENDS, {}),
    ):
        everything = data(api, route, **params)
        pages = [data(api, route, items=3, page=page, **params) for page in range(1, 6)]
        assert all(len(page) <= 3 for page in pages)
        assert [row for page in pages for row in page] == everything, route


def test_the_sends_table_filters_and_sorts(
    api: Api, campaign: Campaign, run_tick: Tick, manual_clock: clock.ManualClock
) -> None:
    news = ok(api.post("/subscription_lists", {"subscription_list": {"name": "News"}}))
    manual_clock.advance(timedelta(minutes=1))
    second = send(api, campaign.mailing_id, news["data"]["id"])["campaign_mailing_send_id"]
    run_tick()

    newest_first = [row["id"] for row in data(api, SENDS)]
    assert newest_first == [second, campaign.send_id]
    assert [row["id"] for row in data(api, SENDS, order="asc")] == newest_first[::-1]
    by_name = data(api, SENDS, order_by="subscription_list_name", order="asc")
    assert [row["subscription_list_name"] for row in by_name] == ["All contacts", "News"]
    assert [row["id"] for row in data(api, SENDS, search='{"subscription_list_name": "new"}')] == [
        second
    ]
    assert data(api, SENDS, search=f'{{"id": "{campaign.send_id.upper()}"}}')[0]["id"] == (
        campaign.send_id
    )
    assert data(api, SENDS, search='{"subscription_list_name": "%"}') == []


def test_csv_exports_escape_what_a_spreadsheet_would_run(api: Api, campaign: Campaign) -> None:
    csv_accept = {"accept": "text/csv"}
    response = api.get(
        CLICKERS,
        params={
            "campaign_mailing_send_id": campaign.send_id,
            "html_id": 2,
            "order_by": "email",
            "order": "asc",
        },
        headers=csv_accept,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header, alex, blake = list(csv.reader(io.StringIO(response.text)))
    assert header == ["id", "email", "first_name", "last_name", "plan"]
    assert alex[1:] == ["alex@example.com", "Alex", "Ames", '\'=HYPERLINK("https://evil.test")']
    assert blake[1:] == ["blake@example.com", "'+Blake", "", "gold"]

    deliveries = api.get(
        DELIVERIES, params={"campaign_mailing_send_id": campaign.send_id}, headers=csv_accept
    )
    header, *rows = list(csv.reader(io.StringIO(deliveries.text)))
    assert header == [
        "recipient",
        "created_at",
        "delivered",
        "viewed",
        "clicked",
        "bounced",
        "unsubscribed",
        "tracking_links",
    ]
    assert len(rows) == 5
    dana = next(row for row in rows if row[0] == "dana@example.com")
    assert dana[2:7] == ["false", "false", "false", "true", "false"]


@pytest.mark.parametrize(
    ("route", "params", "field"),
    [
        (TOTALS, {"campaign_mailing_send_id": "not-a-uuid"}, "campaign_mailing_send_id"),
        (SENDS, {"search": '{"subscription_list_name": '}, "search"),
        (SENDS, {"search": '["News"]'}, "search"),
        (SENDS, {"search": '{"password": "x"}'}, "search"),
        (SENDS, {"search": '{"id": 7}'}, "search"),
        (SENDS, {"order_by": "password"}, "order_by"),
        (SENDS, {"order": "sideways"}, "order"),
        (LINKS, {}, "campaign_mailing_send_id"),
        (
            LINKS,
            {"campaign_mailing_send_id": "x", "order_by": "clicked"},
            "campaign_mailing_send_id",
        ),
        (LINKS, {"campaign_mailing_send_id": UNKNOWN, "order_by": "url"}, "order_by"),
        (CLICKERS, {"campaign_mailing_send_id": UNKNOWN, "html_id": "first"}, "html_id"),
        (CLICKERS, {"campaign_mailing_send_id": UNKNOWN}, "html_id"),
        (CLICKERS, {"campaign_mailing_send_id": UNKNOWN, "html_id": 10**30}, "html_id"),
        (
            CLICKERS,
            {"campaign_mailing_send_id": UNKNOWN, "html_id": 1, "order_by": "id"},
            "order_by",
        ),
        (DELIVERIES, {}, "campaign_mailing_send_id"),
        (DELIVERIES, {"campaign_mailing_id": "a\x00b"}, "campaign_mailing_id"),
        (DELIVERIES, {"campaign_mailing_send_id": UNKNOWN, "items": 0}, "items"),
        (TRACKING_LINKS, {"campaign_mailing_send_id": "1308ab8d"}, "campaign_mailing_send_id"),
        (TRACKING_LINKS, {"campaign_mailing_send_id": UNKNOWN, "page": 2}, "page"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    api: Api, route: str, params: dict[str, Any], field: str
) -> None:
    response = api.get(route, params=params)

    assert response.status_code == 400, response.text
    body = response.json()
    assert body["details"]["field"] == field
    assert field in body["error"]


def test_another_account_sees_nothing_of_this_ones_sends(
    api: Api, other_api: Api, campaign: Campaign
) -> None:
    send_id = {"campaign_mailing_send_id": campaign.send_id}
    zero = data(other_api, TOTALS, **send_id)

    assert set(zero.values()) == {0}
    assert data(other_api, TOTALS) == zero
    assert data(other_api, SENDS) == []
    assert data(other_api, LINKS, **send_id) == []
    assert data(other_api, CLICKERS, html_id=1, **send_id) == []
    assert data(other_api, DELIVERIES, **send_id) == []
    assert data(other_api, DELIVERIES, campaign_mailing_id=campaign.mailing_id) == []
    assert data(other_api, TRACKING_LINKS, **send_id) == []
    assert data(api, TOTALS, campaign_mailing_send_id=UNKNOWN) == zero


def test_a_table_far_larger_than_one_fetch_streams_whole(
    api: Api, database: db.Database, campaign: Campaign
) -> None:
    extra = 2_600  # more than two fetches of 1,000 rows
    with database.transaction() as session:
        the_send = session.scalars(
            select(CampaignMailingSend).where(CampaignMailingSend.uuid == campaign.send_id)
        ).one()
        now = clock.now()
        rows = [
            due_delivery(
                account_id=the_send.account_id,
                kind="campaign",
                campaign_mailing_id=the_send.campaign_mailing_id,
                email=f"bulk{n:05}@example.com",
                tracked=True,
                now=now,
                send_id=the_send.id,
            )
            | {"status": DeliveryStatus.DELIVERED.value, "opened_at": now}
            for n in range(extra)
        ]
        session.execute(insert(Delivery), rows)
        ids = session.scalars(
            select(Delivery.id).where(Delivery.email.like("bulk%")).order_by(Delivery.id)
        ).all()
        session.execute(
            insert(TrackingEvent),
            [
                {
                    "account_id": the_send.account_id,
                    "delivery_id": delivery_id,
                    "kind": "click",
                    "html_id": 2,
                    "url": POST,
                    "occurred_at": now,
                }
                for delivery_id in ids[::100]
            ],
        )

    rows = data(api, DELIVERIES, campaign_mailing_send_id=campaign.send_id)
    tracking = data(api, TRACKING_LINKS, campaign_mailing_send_id=campaign.send_id)
    exported = api.get(
        DELIVERIES,
        params={"campaign_mailing_send_id": campaign.send_id},
        headers={"accept": "text/csv"},
    )

    assert len(rows) == 5 + extra
    bulk = [row for row in rows if row["recipient"].startswith("bulk")]
    assert [row["recipient"] for row in bulk] == [f"bulk{n:05}@example.com" for n in range(extra)]
    assert [n for n, row in enumerate(bulk) if row["tracking_links"]] == list(range(0, extra, 100))
    assert all(row["viewed"] and row["delivered"] for row in bulk)
    assert len(tracking) == (5 + extra) * 2
    assert sum(row["attributes"]["clicked"] for row in tracking) == 4 + extra // 100
    assert len(list(csv.reader(io.StringIO(exported.text)))) == 1 + 5 + extra
