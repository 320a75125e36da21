"""Drip campaign pages: the list with states and counts, and one campaign's graph drawn on
the server with each step's counts, its start and pause buttons and its enrollments."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from dripstone.db import AccountScope
from dripstone.drips import builder, campaigns, lifecycle, report
from dripstone.drips.graph import (
    Action,
    Condition,
    Delay,
    Email,
    Graph,
    Node,
    Split,
    WaitUntil,
    parse_graph,
)
from dripstone.drips.models import DripCampaign, DripState
from dripstone.errors import DripstoneError
from dripstone.http import ReadSession, WriteSession
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers.models import SubscriptionList
from dripstone.users import service as users
from dripstone.web.auth import Editor, SignedIn, Viewer
from dripstone.web.drip_builder import builder_data, new_campaign_form
from dripstone.web.forms import errors_of
from dripstone.web.graph_drawing import EdgeIn, NodeIn, lay_out
from dripstone.web.templating import number, render

router = APIRouter()

ENROLLMENTS_PER_PAGE = 50
KIND_NAMES = {
    "trigger": "Trigger",
    "email": "Email",
    "delay": "Delay",
    "wait_until": "Wait until",
    "condition": "Condition",
    "split": "Split",
    "action": "Action",
    "exit": "Exit",
}
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def _list_names(
    scope: AccountScope,
    ids: set[int] | None = None,
    uuids: set[str] | None = None,
    every: bool = False,
) -> dict[Any, str]:
    """The names of the account's lists, by internal id or by public id (one query); with
    `every`, all of them by public id, in name order."""
    stmt = scope.select(SubscriptionList)
    if every:
        stmt = stmt.order_by(SubscriptionList.name, SubscriptionList.id)
        return {lst.uuid: lst.name for lst in scope.session.scalars(stmt)}
    if ids is not None:
        stmt = stmt.where(SubscriptionList.id.in_(ids))
        return {lst.id: lst.name for lst in scope.session.scalars(stmt)}
    stmt = stmt.where(SubscriptionList.uuid.in_(uuids or set()))
    return {lst.uuid: lst.name for lst in scope.session.scalars(stmt)}


@router.get("/drips", include_in_schema=False)
def drip_campaigns(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    return campaigns_page(request, viewer, session)


def campaigns_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    """The list of campaigns, with the form that starts one from a template (for editors)."""
    scope = viewer.scope(session)
    found = campaigns.list_campaigns(scope, search=None, order_by="created_at", order="desc")
    counts = report.step_counts(session, [c.id for c in found])
    lists = _list_names(scope, ids={c.subscription_list_id for c in found})
    rows = [
        {
            "campaign": c,
            "list_name": lists.get(c.subscription_list_id, "—"),
            "waiting": counts[c.id][0],
            "completed": counts[c.id][1],
        }
        for c in found
    ]
    context = {
        "title": "Drip campaigns",
        "rows": rows,
        "new_form": new_campaign_form(scope),
        "may_create": viewer.may(users.Action.EDIT_CONTENT),
        "templates": {key: t.title for key, t in builder.TEMPLATES.items()},
        "lists": _list_names(scope, uuids=None, every=True),
        "template_errors": errors or {},
        "template_typed": typed or {},
    }
    return render(request, "drips/list.html", context, status_code=status_code)


def _describe(
    node: Node, graph: Graph, mailings: dict[str, str], lists: dict[str, str]
) -> str | None:
    """The key data of a step, in a few words."""
    data = node.data
    if isinstance(data, Email):
        return data.subject or mailings.get(data.mailing_id, "a deleted mailing")
    if isinstance(data, Delay):
        amount = f"{data.amount:g}"
        unit = data.unit[:-1] if amount == "1" else data.unit
        return f"wait {amount} {unit}"
    if isinstance(data, WaitUntil):
        days = ", ".join(WEEKDAYS[d] for d in data.weekdays) if data.weekdays else "any day"
        return f"{data.time} {days}" + (f" ({data.timezone})" if data.timezone else "")
    if isinstance(data, Condition):
        if data.check in ("opened", "clicked"):
            return f"{data.check} {data.node}" + (f" {data.url}" if data.url else "")
        if data.check == "in_list":
            return f"in list {lists.get(data.list_id or '', data.list_id)}"
        value = f" {data.value}" if data.value is not None else ""
        return f"{data.name} {data.op}{value}"
    if isinstance(data, Split):
        return f"a {data.a:g} / b {data.b:g}"
    if isinstance(data, Action):
        if data.do in ("add_to_list", "remove_from_list"):
            verb = "add to" if data.do == "add_to_list" else "remove from"
            return f"{verb} {lists.get(data.list_id or '', data.list_id)}"
        if data.do == "set_field":
            return f"set {data.name} = {data.value}"
        return "unsubscribe"
    return None


def _steps(scope: AccountScope, campaign: DripCampaign, graph: Graph) -> list[dict[str, Any]]:
    """Each node with its words and counts, in graph order."""
    mailing_stmt = scope.select(CampaignMailing).where(
        CampaignMailing.uuid.in_(graph.mailing_ids())
    )
    mailings = {m.uuid: m.subject for m in scope.session.scalars(mailing_stmt)}
    lists = _list_names(scope, uuids=graph.list_ids())
    counts = {n["id"]: n for n in report.node_counts(scope, campaign)}
    steps = []
    for node_id, node in graph.nodes.items():
        described = _describe(node, graph, mailings, lists)
        if node.kind == "trigger":
            described = f"start: {campaign.start_trigger}"
        steps.append(
            {
                "id": node_id,
                "kind": node.kind,
                "kind_name": KIND_NAMES.get(node.kind, node.kind),
                "described": described,
                "counts": counts[node_id],
            }
        )
    return steps


def _drawn(step: dict[str, Any]) -> NodeIn:
    """A step's box: its kind and id, what it does, then its counts."""
    c = step["counts"]
    lines = [f"{step['kind_name']} · {step['id']}"]
    if step["described"]:
        lines.append(step["described"])
    quiet_from = len(lines)
    lines.append(
        f"in {number(c['entered'])} · waiting {number(c['waiting'])}"
        f" · done {number(c['completed'])}"
    )
    if step["kind"] == "email":
        lines.append(
            f"sent {number(c['emails_sent'])} · opened {number(c['emails_opened'])}"
            f" · clicked {number(c['emails_clicked'])}"
        )
    return NodeIn(step["id"], step["kind"], lines, quiet_from)


def _campaign_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    campaign: DripCampaign,
    *,
    after: int | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    scope = viewer.scope(session)
    graph = parse_graph(campaign.nodes)
    steps = _steps(scope, campaign, graph)
    drawing = lay_out(
        [_drawn(s) for s in steps],
        [EdgeIn(e.source, e.target, e.handle) for e in graph.edges],
        graph.trigger_id,
    )
    kinds = {s["id"]: s["kind_name"] for s in steps}
    enrollments, next_after = report.enrollments_page(
        scope, campaign, after=after, items=ENROLLMENTS_PER_PAGE
    )
    lists = _list_names(scope, ids={campaign.subscription_list_id})
    return render(
        request,
        "drips/campaign.html",
        {
            "title": campaign.name,
            "campaign": campaign,
            "list_name": lists.get(campaign.subscription_list_id, "—"),
            "steps": steps,
            "edges": graph.edges,
            "drawing": drawing,
            "kinds": kinds,
            "enrollments": enrollments,
            "next_after": next_after,
            "paged": after is not None,
            "may_start": campaign.state != DripState.STARTED,
            "may_pause": campaign.state == DripState.STARTED,
            "errors": errors or {},
            "builder": builder_data(scope, viewer, campaign),
        },
        status_code=status_code,
    )


@router.get("/drips/{campaign_id}", include_in_schema=False)
def drip_campaign(
    request: Request,
    campaign_id: str,
    viewer: SignedIn,
    session: ReadSession,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> Response:
    campaign = campaigns.get_campaign(viewer.scope(session), campaign_id)
    return _campaign_page(request, viewer, session, campaign, after=after)


def _change(
    request: Request, campaign_id: str, viewer: Viewer, session: Session, start: bool
) -> Response:
    """Start or pause through the lifecycle service the API uses; a refusal shows the page
    again with the reason and nothing changed."""
    scope = viewer.scope(session)
    campaign = campaigns.get_campaign(scope, campaign_id, lock="change")
    try:
        if start:
            lifecycle.start(scope, campaign)
        else:
            lifecycle.pause(campaign)
    except DripstoneError as exc:
        session.rollback()
        campaign = campaigns.get_campaign(scope, campaign_id)
        return _campaign_page(
            request, viewer, session, campaign, errors=errors_of(exc), status_code=422
        )
    return RedirectResponse(f"/drips/{campaign.uuid}", status_code=303)


@router.post("/drips/{campaign_id}/start", include_in_schema=False)
def start_campaign(
    request: Request, campaign_id: str, viewer: Editor, session: WriteSession
) -> Response:
    return _change(request, campaign_id, viewer, session, start=True)


@router.post("/drips/{campaign_id}/pause", include_in_schema=False)
def pause_campaign(
    request: Request, campaign_id: str, viewer: Editor, session: WriteSession
) -> Response:
    return _change(request, campaign_id, viewer, session, start=False)
