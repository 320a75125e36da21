"""Small steps the mailings tests share: lists, subscribers, mailings, sends, messages."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from functools import lru_cache
from typing import Any

from tests.conftest import Api
from tests.delivery.smtp_server import ReceivedMessage

HTML = (
    "<html><head><style>p { color: #333; }</style></head><body>"
    '<p>Hi {{ first_name | default("there") }}, your plan is {{ custom.plan }}.</p>'
    '<p><a href="https://shop.example.com/sale">Sale</a> '
    '<a href="https://blog.example.com/post?id=1">Post</a> '
    '<a href="https://shop.example.com/sale">Sale again</a> '
    '<a href="mailto:help@example.com">Help</a></p>'
    "</body></html>"
)


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def make_list(api: Api, name: str) -> str:
    return str(
        ok(api.post("/subscription_lists", {"subscription_list": {"name": name}}))["data"]["id"]
    )


def add_subscribers(api: Api, list_id: str | None, rows: list[dict[str, Any]]) -> None:
    body: dict[str, Any] = {"subscribers": rows}
    if list_id is not None:
        body["subscription_list_id"] = list_id
    ok(api.post("/subscribers_bulk_create", body))


def subscriber_id(api: Api, address: str) -> str:
    found = ok(api.get("/subscribers", params={"search": address.split("@")[0]}))["data"]
    return str(next(s["id"] for s in found if s["attributes"]["email"] == address))


def make_mailing(api: Api, subject: str = "Hello {{ first_name }}", **fields: Any) -> str:
    body = {"campaign_mailing": {"subject": subject, "html_part": HTML, **fields}}
    return str(ok(api.post("/campaign_mailings", body))["data"]["id"])


def send(api: Api, mailing_id: str, list_id: str, **fields: Any) -> dict[str, Any]:
    body = {
        "campaign_mailing_id": mailing_id,
        "campaign_mailing_send": {
            "sender_email": "owner@example.com",
            "subscription_list_id": list_id,
            **fields,
        },
    }
    data: dict[str, Any] = ok(api.post("/campaign_mailing_sends", body))["data"]
    return data


def job(api: Api, jid: str) -> dict[str, Any]:
    attributes: dict[str, Any] = ok(api.get(f"/jobs/{jid}"))["data"]["attributes"]
    return attributes


def parsed(message: ReceivedMessage) -> EmailMessage:
    return _parsed(message.data)


@lru_cache(maxsize=8192)
def _parsed(data: bytes) -> EmailMessage:
    # Crash tests read each of thousands of messages more than once; parsing is their cost.
    result = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(result, EmailMessage)
    return result


def to(messages: list[ReceivedMessage], address: str) -> list[EmailMessage]:
    return [parsed(m) for m in messages if m.rcpt_tos == [address]]


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())
