"""The drip builder's services: simulate a campaign for one subscriber, real or described,
and start a draft campaign from a template."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from dripstone import clock
from dripstone.accounts.models import Account
from dripstone.db import AccountScope
from dripstone.drips import campaigns, engine, runner
from dripstone.drips.graph import Condition, parse_graph
from dripstone.drips.models import DripCampaign
from dripstone.drips.simulate import Simulation, simulate
from dripstone.errors import Invalid, NotFound
from dripstone.mailings import service as mailings
from dripstone.mailings.models import CampaignMailing
from dripstone.mailings.schemas import MailingFields
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


@dataclass(frozen=True)
class _Step:
    id: str
    kind: str
    data: dict[str, object]
    x: int
    y: int


@dataclass(frozen=True)
class Template:
    """A campaign to start from: its steps (email steps name a placeholder by `data["email"]`),
    edges (source, target, handle), trigger and the placeholder mailings' names."""

    title: str
    start_trigger: str
    emails: dict[str, str]  # placeholder key -> what the email is for
    steps: tuple[_Step, ...]
    edges: tuple[tuple[str, str, str | None], ...]


def _email(node_id: str, key: str, x: int, y: int) -> _Step:
    return _Step(node_id, "email", {"email": key}, x, y)


def _clicked(node_id: str, email: str, x: int, y: int) -> _Step:
    return _Step(node_id, "condition", {"check": "clicked", "node": email}, x, y)


def _wait(node_id: str, days: int, x: int, y: int) -> _Step:
    return _Step(node_id, "delay", {"amount": days, "unit": "days"}, x, y)


TEMPLATES: dict[str, Template] = {
    "welcome_series": Template(
        title="Welcome series",
        start_trigger="subscription",
        emails={"welcome": "Welcome", "next": "Next steps", "nudge": "Reminder"},
        steps=(
            _Step("trigger", "trigger", {}, 200, 0),
            _email("welcome", "welcome", 200, 120),
            _wait("wait", 2, 200, 240),
            _clicked("clicked", "welcome", 200, 360),
            _email("next", "next", 0, 480),
            _email("nudge", "nudge", 400, 480),
        ),
        edges=(
            ("trigger", "welcome", None),
            ("welcome", "wait", None),
            ("wait", "clicked", None),
            ("clicked", "next", "yes"),
            ("clicked", "nudge", "no"),
        ),
    ),
    "re_engagement": Template(
        title="Re-engagement",
        start_trigger="existing",
        emails={"miss": "We miss you", "thanks": "Thank you", "last": "Last chance"},
        steps=(
            _Step("trigger", "trigger", {}, 200, 0),
            _email("miss", "miss", 200, 120),
            _wait("wait", 7, 200, 240),
            _clicked("clicked", "miss", 200, 360),
            _email("thanks", "thanks", 0, 480),
            _email("last", "last", 400, 480),
            _wait("last_wait", 7, 400, 600),
            _clicked("last_clicked", "last", 400, 720),
            _Step("stay", "exit", {}, 200, 840),
            _Step("unsubscribe", "action", {"do": "unsubscribe"}, 600, 840),
        ),
        edges=(
            ("trigger", "miss", None),
            ("miss", "wait", None),
            ("wait", "clicked", None),
            ("clicked", "thanks", "yes"),
            ("clicked", "last", "no"),
            ("last", "last_wait", None),
            ("last_wait", "last_clicked", None),
            ("last_clicked", "stay", "yes"),
            ("last_clicked", "unsubscribe", "no"),
        ),
    ),
    "ab_first_email": Template(
        title="A/B test of a first email",
        start_trigger="subscription",
        emails={
            "a": "First email, version A",
            "b": "First email, version B",
            "follow": "Follow-up",
        },
        steps=(
            _Step("trigger", "trigger", {}, 200, 0),
            _Step("split", "split", {"weights": {"a": 50, "b": 50}}, 200, 120),
            _email("email_a", "a", 0, 240),
            _email("email_b", "b", 400, 240),
            _wait("wait", 3, 200, 360),
            _email("follow_up", "follow", 200, 480),
        ),
        edges=(
            ("trigger", "split", None),
            ("split", "email_a", "a"),
            ("split", "email_b", "b"),
            ("email_a", "wait", None),
            ("email_b", "wait", None),
            ("wait", "follow_up", None),
        ),
    ),
}

MAX_SUBJECT_TRIES = 100


def create_from_template(
    scope: AccountScope, template_name: str, list_id: str, name: str | None = None
) -> DripCampaign:
    """A draft campaign on the list `list_id` laid out as the template, with a placeholder
    mailing (subject and body saying "edit me") for each of its emails."""
    template = TEMPLATES.get(template_name)
    if template is None:
        known = ", ".join(TEMPLATES)
        raise Invalid(f"template: must be one of {known}, got {template_name!r}", field="template")
    title = (name or "").strip() or template.title
    mailings_by_key = {
        key: _placeholder(scope, title, purpose) for key, purpose in template.emails.items()
    }
    nodes = []
    for step in template.steps:
        data = dict(step.data)
        if step.kind == "email":
            data = {"campaign_mailing_id": mailings_by_key[str(data.pop("email"))].uuid}
        nodes.append(
            {"id": step.id, "type": step.kind, "data": data, "position": {"x": step.x, "y": step.y}}
        )
    edges = [
        {"id": f"{source}-{target}", "source": source, "target": target, "sourceHandle": handle}
        for source, target, handle in template.edges
    ]
    return campaigns.create_campaign(
        scope,
        campaigns.CampaignFields(
            name=title,
            subscription_list_id=list_id,
            start_trigger=template.start_trigger,
            nodes=json.dumps({"nodes": nodes, "edges": edges}),
        ),
    )


def _placeholder(scope: AccountScope, title: str, purpose: str) -> CampaignMailing:
    """A mailing whose subject and body say to edit them, under a subject not yet taken."""
    html = (
        f"<p>Edit me: this is the placeholder for the email “{escape(purpose)}” of the drip "
        f"campaign “{escape(title)}”. Write its subject and content before starting it.</p>"
    )
    for attempt in range(1, MAX_SUBJECT_TRIES + 1):
        suffix = "" if attempt == 1 else f" ({attempt})"
        subject = f"{purpose} (edit me){suffix} · {title}"[:255]
        taken = scope.session.execute(
            scope.select(CampaignMailing, CampaignMailing.id)
            .where(CampaignMailing.subject == subject)
            .limit(1)
        ).first()
        if taken is None:
            return mailings.save_mailing(
                scope, MailingFields(subject=subject, html_part=html), None
            )
    raise Invalid("name: too many campaigns already have this name", field="name")
