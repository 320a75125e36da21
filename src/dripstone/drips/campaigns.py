"""Drip campaigns as written: save and check graphs (every mailing and list they name is
the account's, every mailing renders), list, delete, and what they keep from being deleted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import (
    AccountScope,
    RowLock,
    locked,
    matches_regex,
    ordering,
    searched,
)
from dripstone.delivery import dispatcher
from dripstone.delivery.checks import check_templates
from dripstone.drips import counters
from dripstone.drips.graph import (
    Graph,
    GraphError,
    Relocation,
    parse_graph,
    relocations,
)
from dripstone.drips.models import (
    DripCampaign,
    DripEnrollment,
    DripState,
    EnrollmentState,
)
from dripstone.errors import Invalid, NotFound
from dripstone.mailings import service as mailings
from dripstone.mailings.models import CampaignMailing
from dripstone.references import InUse
from dripstone.subscribers import lists as subscription_lists
from dripstone.subscribers.models import (
    SubscriptionList,
)
from dripstone.wire import fits_in_a_header, normalize_email

NODES_FIELD = "drip_campaign_nodes"


@dataclass(frozen=True)
class CampaignFields:
    """A campaign as written; None means "not sent" on update."""

    name: str | None
    subscription_list_id: str | None
    start_trigger: str | None
    nodes: str | None


def checked_graph(scope: AccountScope, text: str) -> Graph:
    """The graph in `text`, or 422 naming the JSON path or node of the first problem,
    including references to mailings or lists this account does not have."""
    try:
        graph = parse_graph(text)
    except GraphError as exc:
        raise Invalid(
            f"{NODES_FIELD}: {exc}", field=NODES_FIELD, path=exc.path, node=exc.node_id
        ) from None
    # Held until the end, so that a mailing deleted meanwhile is not left referenced (its
    # delete holds it for change); in id order, as the delete takes them.
    scope.session.execute(
        locked(
            scope.select(CampaignMailing, CampaignMailing.id)
            .where(CampaignMailing.uuid.in_(graph.mailing_ids()))
            .order_by(CampaignMailing.id),
            "share",
        )
    )
    for node_id, kind, value in graph.references():
        if kind == "campaign_mailing_id":
            mailing = scope.by_uuid(CampaignMailing, value)
            if mailing is None:
                _bad_node(node_id, f"no campaign mailing {value} in this account")
            node = graph.nodes[node_id].data
            _check_sender(node_id, node)
            subject = getattr(node, "subject", None) or mailing.subject
            problems = check_templates(subject, mailing.html_part, mailing.text_part)
            if problems:
                _bad_node(node_id, f"its mailing does not render: {problems[0]}")
        elif scope.by_uuid(SubscriptionList, value) is None:
            _bad_node(node_id, f"no subscription list {value} in this account")
    return graph


def _check_sender(node_id: str, node: object) -> None:
    """An email node's sender overrides go into headers as they are: refuse what cannot."""
    from_email, from_name = getattr(node, "from_email", None), getattr(node, "from_name", None)
    if from_email is not None:
        try:
            normalize_email(from_email)
        except ValueError as exc:
            _bad_node(node_id, f"from_email: {exc}")
    if from_name is not None and not fits_in_a_header(from_name):
        _bad_node(node_id, "from_name: must not contain line breaks or control characters")


def _bad_node(node_id: str, message: str) -> NoReturn:
    raise Invalid(f"{NODES_FIELD}: node {node_id!r}: {message}", field=NODES_FIELD, node=node_id)


def create_campaign(scope: AccountScope, fields: CampaignFields) -> DripCampaign:
    """A new campaign in `draft`."""
    missing = [
        name
        for name, value in (
            ("name", fields.name),
            ("subscription_list_id", fields.subscription_list_id),
            ("start_trigger", fields.start_trigger),
            (NODES_FIELD, fields.nodes),
        )
        if value is None
    ]
    if missing:
        raise Invalid(f"{missing[0]}: is required", field=missing[0])
    campaign = DripCampaign(account_id=scope.account_id, state=DripState.DRAFT)
    _apply(scope, campaign, fields)
    scope.session.add(campaign)
    scope.session.flush()
    return campaign


def update_campaign(
    scope: AccountScope, campaign: DripCampaign, fields: CampaignFields
) -> DripCampaign:
    """Change the fields sent. On a started or paused campaign a new graph applies at once:
    enrollments keep their node if it is still there, move to the node that replaced theirs,
    or leave the campaign (see `relocate`)."""
    old_graph = parse_graph(campaign.nodes)
    _apply(scope, campaign, fields)
    if campaign.state != DripState.DRAFT and fields.nodes is not None:
        _move_enrollments(scope.session, campaign, old_graph, parse_graph(campaign.nodes))
    campaign.updated_at = clock.now()
    return campaign


def _apply(scope: AccountScope, campaign: DripCampaign, fields: CampaignFields) -> None:
    if fields.name is not None:
        campaign.name = fields.name
    if fields.subscription_list_id is not None:
        lst = subscription_lists.referenced_list(
            scope, fields.subscription_list_id, "subscription_list_id"
        )
        if campaign.state != DripState.DRAFT and campaign.subscription_list_id not in (
            None,
            lst.id,
        ):
            raise Invalid(
                "subscription_list_id: the list of a started campaign cannot change",
                field="subscription_list_id",
            )
        campaign.subscription_list_id = lst.id
    if fields.start_trigger is not None:
        campaign.start_trigger = fields.start_trigger
    if fields.nodes is not None:
        graph = checked_graph(scope, fields.nodes)
        campaign.nodes = graph.to_json()
        campaign.tree_blob = json.dumps(graph.tree_blob(), separators=(",", ":"))


def waiting_by_node(session: Session, campaign: DripCampaign) -> dict[str, int]:
    """How many active enrollments of the campaign are at each node."""
    rows = session.execute(
        select(DripEnrollment.node_id, func.count())
        .where(
            DripEnrollment.drip_campaign_id == campaign.id,
            DripEnrollment.state == EnrollmentState.ACTIVE,
        )
        .group_by(DripEnrollment.node_id)
    )
    return {row[0]: row[1] for row in rows}


def preview_edit(scope: AccountScope, campaign: DripCampaign, nodes_text: str) -> list[Relocation]:
    """What saving `nodes_text` as the campaign's graph would do to the enrollments waiting on
    each node it changes or removes, by the rule the save follows; nothing is changed. The
    graph is checked as the save checks it, and refused with the same errors."""
    new = checked_graph(scope, nodes_text)
    if campaign.state == DripState.DRAFT:
        return []  # a draft has no one waiting: the save moves no one
    old = parse_graph(campaign.nodes)
    plan = relocations(old, new, waiting_by_node(scope.session, campaign))
    return [r for r in plan if r.changed]


def _move_enrollments(session: Session, campaign: DripCampaign, old: Graph, new: Graph) -> None:
    now = clock.now()
    deltas = counters.Deltas()
    for moved in relocations(old, new, waiting_by_node(session, campaign)):
        node_id = moved.node_id
        if moved.outcome != "stays":
            deltas.move(campaign.id, node_id, "waiting", -moved.count)
            if moved.to is None:
                deltas.move(campaign.id, node_id, "exited", moved.count)
            else:
                deltas.move(campaign.id, moved.to, "waiting", moved.count)
        where = and_(
            DripEnrollment.drip_campaign_id == campaign.id,
            DripEnrollment.state == EnrollmentState.ACTIVE,
            DripEnrollment.node_id == node_id,
        )
        if moved.outcome == "leaves":
            session.execute(
                update(DripEnrollment)
                .where(where)
                .values(
                    state=EnrollmentState.EXITED,
                    finished_at=now,
                    exit_reason=f"its step {node_id!r} was removed from the campaign",
                )
            )
        elif moved.outcome == "stays":
            # Looked at again now: a changed delay or time takes effect from the arrival.
            session.execute(update(DripEnrollment).where(where).values(next_run_at=now))
        else:
            session.execute(
                update(DripEnrollment)
                .where(where)
                .values(node_id=moved.to, arrived_at=now, next_run_at=now)
            )
    counters.add(session, deltas)


def get_campaign(
    scope: AccountScope, campaign_id: str, lock: RowLock | None = None
) -> DripCampaign:
    """The campaign; `lock="change"` holds it until the transaction ends, so that edits,
    starts and pauses take turns with each other, and the runner and the enrollment jobs
    (which hold it shared) never place anyone by a graph that is being replaced."""
    found = scope.by_uuid(DripCampaign, campaign_id, lock)
    if found is None or found.deleted_at is not None:
        raise NotFound(f"drip campaign {campaign_id} not found", field="id")
    return found


ORDERABLE = {
    "name": DripCampaign.name,
    "created_at": DripCampaign.created_at,
    "updated_at": DripCampaign.updated_at,
    "state": DripCampaign.state,
}


def list_campaigns(
    scope: AccountScope, *, search: str | None, order_by: str, order: Literal["asc", "desc"]
) -> list[DripCampaign]:
    stmt = scope.select(DripCampaign).where(DripCampaign.deleted_at.is_(None))
    if search:
        stmt = stmt.where(matches_regex(scope.session, DripCampaign.name, search))
    stmt = stmt.order_by(*ordering(ORDERABLE[order_by], DripCampaign.id, order))
    return searched(scope.session, stmt) if search else list(scope.session.scalars(stmt))


def delete_campaign(scope: AccountScope, campaign: DripCampaign) -> None:
    """Delete a campaign that is not started; its enrollments and emails stay in analytics."""
    if campaign.state == DripState.STARTED:
        raise Invalid("the campaign is started: pause it before deleting it", field="state")
    campaign.deleted_at = clock.now()
    dispatcher.release_held(
        scope.session, enrollment_ids(campaign), reason="the drip campaign was deleted"
    )


@subscription_lists.LIST_USES.register
def _campaigns_on_lists(
    scope: AccountScope, lists: Sequence[SubscriptionList]
) -> list[InUse | None]:
    """Deleting a list would delete the campaigns on it and their enrollments with them."""
    found: list[InUse | None] = []
    for lst in lists:
        campaign = scope.session.scalars(
            scope.select(DripCampaign).where(
                DripCampaign.subscription_list_id == lst.id, DripCampaign.deleted_at.is_(None)
            )
        ).first()
        found.append(
            None
            if campaign is None
            else InUse(
                f"the drip campaign {campaign.name!r} ({campaign.uuid}) runs on this list: "
                "delete the campaign first",
                {"drip_campaign_id": campaign.uuid},
            )
        )
    return found


@mailings.MAILING_USES.register
def _campaigns_sending_mailings(
    scope: AccountScope, mailings_: Sequence[CampaignMailing]
) -> list[InUse | None]:
    """A campaign (deleted ones aside) whose email step sends the mailing would stall at that
    step if it were deleted."""
    wanted = {m.uuid for m in mailings_}
    senders: dict[str, InUse] = {}
    campaigns = scope.session.scalars(
        scope.select(DripCampaign)
        .where(DripCampaign.deleted_at.is_(None))
        .order_by(DripCampaign.id)
    )
    for campaign in campaigns:
        for node_id, kind, value in parse_graph(campaign.nodes).references():
            if kind == "campaign_mailing_id" and value in wanted and value not in senders:
                senders[value] = InUse(
                    f"the drip campaign {campaign.name!r} ({campaign.uuid}) sends this mailing "
                    f"at its step {node_id!r}: change that step or delete the campaign first",
                    {"drip_campaign_id": campaign.uuid, "node": node_id},
                )
    return [senders.get(m.uuid) for m in mailings_]


def enrollment_ids(campaign: DripCampaign) -> Any:
    return select(DripEnrollment.id).where(DripEnrollment.drip_campaign_id == campaign.id)
