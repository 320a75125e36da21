"""POST /drip_campaigns/{id}/simulate: the engine's path for a subscriber or typed facts, with
dates, and nothing sent or recorded; bad facts are refused naming the field."""

from __future__ import annotations

from typing import Any

from dripstone import clock
from tests.conftest import Api
from tests.drips.helpers import create, edge, graph, node, report
from tests.mailings.helpers import make_mailing, ok, subscriber_id
from tests.subscribers.helpers import assert_error


def named_or_not(api: Api, news: str) -> str:
    """trigger → hello → 1 hour → has a first name? yes: the named email; no: exit."""
    hello, named = make_mailing(api, subject="Hello"), make_mailing(api, subject="Named")
    nodes = graph(
        [
            node("t", "trigger"),
            node("hello", "email", campaign_mailing_id=hello),
            node("hour", "delay", amount=1, unit="hours"),
            node("named", "condition", check="field", name="first_name", op="not_empty"),
            node("tips", "email", campaign_mailing_id=named),
            node("bye", "exit"),
        ],
        [
            edge("t", "hello"),
            edge("hello", "hour"),
            edge("hour", "named"),
            edge("named", "tips", "yes"),
            edge("named", "bye", "no"),
        ],
    )
    return create(api, news, nodes)


def simulate(api: Api, campaign: str, body: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = ok(api.post(f"/drip_campaigns/{campaign}/simulate", body))["data"]
    return data


def test_a_real_subscribers_fields_choose_the_branch(
    api: Api, news: str, manual_clock: clock.ManualClock
) -> None:
    campaign = named_or_not(api, news)
    alex, blake = subscriber_id(api, "alex@example.com"), subscriber_id(api, "blake@example.com")

    named = simulate(api, campaign, {"subscriber_id": alex, "start_at": "2026-05-01T08:00:00Z"})
    unnamed = simulate(api, campaign, {"subscriber_id": blake})

    assert [(s["node_id"], s["at"], s["what"]) for s in named["steps"]][2:] == [
        ("hour", "2026-05-01T08:00:00Z", "waited until 2026-05-01 09:00 UTC"),
        ("named", "2026-05-01T09:00:00Z", "branch yes"),
        ("tips", "2026-05-01T09:00:00Z", named["steps"][4]["what"]),
    ]
    assert named["steps"][4]["what"] == f"sent email {named['steps'][4]['mailing_id']}"
    assert named["outcome"] == "completed"
    assert [s["node_id"] for s in unnamed["steps"]] == ["t", "hello", "hour", "named", "bye"]
    assert unnamed["steps"][0]["at"] == manual_clock.now().isoformat().replace("+00:00", "Z")
    # Typed facts override the subscriber's own.
    renamed = simulate(
        api, campaign, {"subscriber_id": blake, "facts": {"fields": {"first_name": "Bo"}}}
    )
    assert renamed["steps"][3]["branch"] == "yes"
    # Nothing was sent or recorded: the draft has no enrollments.
    assert report(api, campaign)["enrollments"] == []


def test_bad_facts_are_refused_naming_the_field(api: Api, news: str) -> None:
    campaign = named_or_not(api, news)
    path = f"/drip_campaigns/{campaign}/simulate"

    assert_error(
        api.post(path, {"facts": {"opened": ["hour"]}}), 422, code="invalid", field="facts.opened"
    )
    assert_error(api.post(path, {"facts": {"timezone": "Mars/Base"}}), 422, field="facts.timezone")
    assert_error(api.post(path, {"start_at": "2026-05-01T08:00:00"}), 422, field="start_at")
    assert_error(api.post(path, {"surprise": 1}), 422, field="surprise")
    stranger = "11111111-1111-4111-8111-111111111111"
    assert_error(api.post(path, {"subscriber_id": stranger}), 404, field="subscriber_id")
    assert_error(api.post(f"/drip_campaigns/{stranger}/simulate", {}), 404, field="id")
