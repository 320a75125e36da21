"""A team's data made through the API over HTTP, as a user's program would: a list with
subscribers, two mailings, and a started drip campaign on them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.drips.helpers import two_emails
from tests.mailings.helpers import HTML
from tests.processes import wait_until
from tests.web.conftest import Team


class TeamApi:
    """The Marketing API of a team's account, on the live server."""

    def __init__(self, base_url: str, team: Team) -> None:
        self.http = httpx.Client(
            base_url=f"{base_url}/v1/marketing",
            headers={"authorization": f"Token token={team.api_key}"},
            timeout=30,
        )

    def call(self, method: str, path: str, body: Any = None) -> Any:
        answer = self.http.request(method, path, json=body)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def close(self) -> None:
        self.http.close()


def sent_mailing(api: TeamApi, list_id: str, mailing_id: str) -> None:
    """Send the mailing to the list, and wait until the server has sent it."""
    body = {
        "campaign_mailing_id": mailing_id,
        "campaign_mailing_send": {
            "sender_email": "owner@example.com",
            "subscription_list_id": list_id,
        },
    }
    send_id = api.call("POST", "/campaign_mailing_sends", body)["data"]["campaign_mailing_send_id"]

    def sent() -> bool:
        found = api.call("GET", f"/campaign_mailing_sends/{send_id}")["data"]["attributes"]
        return bool(found["state"] == "sent")

    wait_until(sent, "the send to be sent", 60)


def started_campaign(api: TeamApi, name: str = "Welcome series", send: bool = False) -> str:
    """News (three subscribers with unique addresses) and a started campaign on it:
    trigger → welcome email → 2 days → tips email; with `send`, the welcome mailing is also
    sent to the list first. Returns the campaign's id."""
    news = api.call("POST", "/subscription_lists", {"subscription_list": {"name": "News"}})
    list_id = news["data"]["id"]
    people = [{"email": f"drip-{uuid.uuid4().hex[:10]}@example.com"} for _ in range(3)]
    api.call(
        "POST",
        "/subscribers_bulk_create",
        {"subscribers": people, "subscription_list_id": list_id},
    )
    mailings = [
        api.call(
            "POST", "/campaign_mailings", {"campaign_mailing": {"subject": s, "html_part": HTML}}
        )["data"]["id"]
        for s in ("Welcome aboard", "Three tips")
    ]
    body = {
        "drip_campaign": {
            "name": name,
            "subscription_list_id": list_id,
            "start_trigger": "existing",
            "drip_campaign_nodes": two_emails(*mailings, amount=2, unit="days"),
        }
    }
    if send:
        sent_mailing(api, list_id, mailings[0])
    campaign_id: str = api.call("POST", "/drip_campaigns", body)["data"]["id"]
    api.call("POST", f"/drip_campaigns/{campaign_id}/start")

    def enrolled() -> bool:
        found = api.call("GET", f"/drip_campaigns/{campaign_id}/report")["data"]["enrollments"]
        return len(found) == len(people)

    wait_until(enrolled, "the list's members to be enrolled", 60)
    return campaign_id
