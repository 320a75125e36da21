"""The drip builder's services: simulate a campaign for one subscriber, real or described,
and start a draft campaign from a template."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from dripstone import clock
from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.drips import engine, runner
from dripstone.drips.graph import Condition, parse_graph
from dripstone.drips.models import DripCampaign
from dripstone.drips.simulate import Simulation, simulate
from dripstone.errors import Invalid, NotFound
from dripstone.subscribers.models import Subscriber, SubscriptionList

# The split key of a described subscriber: the same answer every time for the same facts.
DESCRIBED_KEY = "simulated subscriber"


@dataclass(frozen=True)
class DescribedFacts:
    """Facts typed in: the email nodes opened and clicked (every link the graph asks about),
    field values by the names conditions use, lists (uuids) and a time zone. With a real
    subscriber they add to and override what the subscriber has."""

    opened: Sequence[str] = ()
    clicked: Sequence[str] = ()
    fields: Mapping[str, str | None] = field(default_factory=dict)
    lists: Sequence[str] = ()
    timezone: str | None = None


def simulate_campaign(
    scope: AccountScope,
    campaign: DripCampaign,
    *,
    subscriber_id: str | None,
    described: DescribedFacts,
    start: datetime | None = None,
) -> Simulation:
    """The path the engine would take through the campaign's graph from `start` (now by
    default); nothing is sent or recorded."""
    graph = parse_graph(campaign.nodes)
    emails = graph.email_node_ids()
    for name, ids in (("facts.opened", described.opened), ("facts.clicked", described.clicked)):
        for node_id in ids:
            if node_id not in emails:
                raise Invalid(f"{name}: {node_id!r} is not an email node", field=name, node=node_id)
    lst = scope.by_id(SubscriptionList, campaign.subscription_list_id)
    campaign_list = None if lst is None or lst.is_default else lst.uuid
    key, fields, lists, timezone = DESCRIBED_KEY, {}, set(), None
    if campaign_list is not None:
        lists.add(campaign_list)  # a described subscriber is on the campaign's list
    if subscriber_id is not None:
        subscriber = scope.by_uuid(Subscriber, subscriber_id)
        if subscriber is None:
            raise NotFound(f"subscriber {subscriber_id} not found", field="subscriber_id")
        person = runner.subjects(scope.session, [subscriber.id])[subscriber.id]
        key, fields, lists, timezone = person.uuid, person.fields, person.lists, person.timezone
    asked: dict[str, set[str]] = {node_id: set() for node_id in described.clicked}
    for node in graph.nodes.values():
        data = node.data
        if isinstance(data, Condition) and data.url is not None and data.node in asked:
            asked[data.node].add(data.url)
    facts = engine.Facts(
        subscriber_key=key,
        fields={**fields, **described.fields},
        lists=frozenset(lists | set(described.lists)),
        opened=frozenset(described.opened),
        clicked={node_id: frozenset(urls) for node_id, urls in asked.items()},
        timezone=described.timezone or timezone,
    )
    account = scope.session.get(Account, scope.account_id)
    zone = account.timezone if account is not None and account.timezone else "UTC"
    return simulate(graph, facts, start or clock.now(), zone, campaign_list)
