"""The JSON a drip campaign's page asks for while it is open: what a live edit would do to
the people waiting, the counts per node (polled), who waits at a node, one subscriber's
path, and what the engine would do for a subscriber. Each is one call to a drips service."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, RedirectResponse, Response

from dripstone.db import AccountScope
from dripstone.drips import builder, campaigns, report
from dripstone.drips.api import simulation
from dripstone.drips.schemas import MAX_GRAPH_LENGTH, SimulateBody
from dripstone.errors import DripstoneError, Invalid
from dripstone.http import ReadSession, WriteSession
from dripstone.subscribers.models import Subscriber
from dripstone.web.auth import Editor, SignedIn
from dripstone.web.drip_builder import refusal_errors
from dripstone.web.drips import campaigns_page
from dripstone.web.forms import errors_of, typed

router = APIRouter()

WAITING_PER_PAGE = 50


def refused(exc: DripstoneError | ValidationError) -> JSONResponse:
    """A refusal as the page's scripts read it, the editor's save's way: each error names its
    node and field. A body the route cannot take is a 400, as the API answers it."""
    status = 400 if isinstance(exc, ValidationError) else exc.status
    return JSONResponse({"errors": refusal_errors(exc)}, status_code=status)


@router.post("/drips/{campaign_id}/edit-preview", include_in_schema=False)
def edit_preview(
    campaign_id: str,
    viewer: Editor,
    session: WriteSession,
    graph: Annotated[dict[str, Any], Body()],
) -> Response:
    scope = viewer.scope(session)
    try:
        text = json.dumps(graph)
        if len(text) > MAX_GRAPH_LENGTH:
            raise Invalid(f"the graph must be at most {MAX_GRAPH_LENGTH:,} characters", field="$")
        campaign = campaigns.get_campaign(scope, campaign_id)
        plan = campaigns.preview_edit(scope, campaign, text)
    except DripstoneError as exc:
        session.rollback()
        return refused(exc)
    changes = [
        {"node_id": r.node_id, "count": r.count, "outcome": r.outcome, "to": r.to} for r in plan
    ]
    return JSONResponse({"changes": changes})


@router.get("/drips/{campaign_id}/node-counts", include_in_schema=False)
def node_counts(campaign_id: str, viewer: SignedIn, session: ReadSession) -> Response:
    scope = viewer.scope(session)
    try:
        campaign = campaigns.get_campaign(scope, campaign_id)
    except DripstoneError as exc:
        return refused(exc)
    nodes = {
        n["id"]: {
            "entered": n["entered"],
            "waiting": n["waiting"],
            "completed": n["completed"],
            "sent": n["emails_sent"],
            "opened": n["emails_opened"],
            "clicked": n["emails_clicked"],
        }
        for n in report.node_counts(scope, campaign)
    }
    return JSONResponse({"nodes": nodes, "state": campaign.state})


@router.get("/drips/{campaign_id}/nodes/{node_id}/waiting", include_in_schema=False)
def waiting_at(
    campaign_id: str,
    node_id: str,
    viewer: SignedIn,
    session: ReadSession,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> Response:
    scope = viewer.scope(session)
    try:
        campaign = campaigns.get_campaign(scope, campaign_id)
        found, next_after = report.waiting_at(
            scope, campaign, node_id, after=after, limit=WAITING_PER_PAGE
        )
    except DripstoneError as exc:
        return refused(exc)
    subscribers = [{**s, "next_run_at": s["next_run_at"].isoformat()} for s in found]
    return JSONResponse({"subscribers": subscribers, "next": next_after})


@router.get("/drips/{campaign_id}/subscribers/{subscriber_id}/path", include_in_schema=False)
def enrollment_path(
    campaign_id: str, subscriber_id: str, viewer: SignedIn, session: ReadSession
) -> Response:
    scope = viewer.scope(session)
    try:
        campaign = campaigns.get_campaign(scope, campaign_id)
        path = report.enrollment_path(scope, campaign, subscriber_id)
    except DripstoneError as exc:
        return refused(exc)
    return JSONResponse(
        {
            "visits": [
                {"node_id": v["node_id"], "at": v["at"].isoformat()} for v in path["visits"]
            ],
            "current": path["current"],
            "state": path["state"],
            "next_run_at": path["next_run_at"].isoformat() if path["next_run_at"] else None,
        }
    )


def _by_address(scope: AccountScope, body: dict[str, Any]) -> dict[str, Any]:
    """The page may name the subscriber by address (`subscriber_email`) where the API takes
    an id: the body with the id of the account's subscriber of that address."""
    if "subscriber_email" not in body:
        return body
    asked = dict(body)
    typed_address = asked.pop("subscriber_email")
    email = typed_address.strip().lower() if isinstance(typed_address, str) else ""
    found = scope.session.scalar(
        scope.select(Subscriber, Subscriber.uuid).where(Subscriber.email == email)
    )
    if found is None:
        raise Invalid(
            f"subscriber_email: no subscriber {typed_address!r} in this account",
            field="subscriber_email",
        )
    return {**asked, "subscriber_id": found}


@router.post("/drips/{campaign_id}/simulate", include_in_schema=False)
def simulate(
    campaign_id: str,
    viewer: Editor,
    session: ReadSession,
    body: Annotated[dict[str, Any], Body()],
) -> Response:
    scope = viewer.scope(session)
    try:
        asked = SimulateBody.model_validate(_by_address(scope, body))
        run = simulation(scope, campaigns.get_campaign(scope, campaign_id), asked)
    except (DripstoneError, ValidationError) as exc:
        return refused(exc)
    return JSONResponse({"data": run.model_dump(mode="json")})


@router.post("/drips/from-template", include_in_schema=False)
async def from_template(request: Request, viewer: Editor, session: WriteSession) -> Response:
    form = await request.form()
    scope = viewer.scope(session)
    name = str(form.get("name") or "")
    try:
        if len(name) > 255 or "\x00" in name:
            raise Invalid("name: must be at most 255 characters, without NUL", field="name")
        campaign = builder.create_from_template(
            scope, str(form.get("template") or ""), str(form.get("list") or ""), name or None
        )
    except DripstoneError as exc:
        session.rollback()
        return campaigns_page(
            request, viewer, session, errors=errors_of(exc), typed=typed(form), status_code=422
        )
    return RedirectResponse(f"/drips/{campaign.uuid}", status_code=303)
