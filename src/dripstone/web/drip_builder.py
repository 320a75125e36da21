"""The drip builder: what the editor on a campaign's page starts from, saving its graph through
the service the API uses, and a new draft campaign made from the list page."""

from __future__ import annotations

import json
from functools import cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from fastapi import APIRouter, Body, Request
from pydantic import ValidationError
from starlette.responses import JSONResponse, RedirectResponse, Response

from dripstone.analytics.tables import links_in
from dripstone.db import AccountScope
from dripstone.drips import campaigns, schemas
from dripstone.drips.models import DripCampaign
from dripstone.errors import DripstoneError
from dripstone.http import WriteSession
from dripstone.mailings.models import CampaignMailing
from dripstone.subscribers import lists
from dripstone.users.service import Action
from dripstone.web.auth import Editor, Viewer
from dripstone.web.forms import errors_of, typed
from dripstone.web.templating import asset_url, render

router = APIRouter()

# The graph of a new campaign: its trigger, nothing after it yet.
EMPTY_GRAPH = {"nodes": [{"id": "trigger", "type": "trigger", "data": {}}], "edges": []}
NODES_PREFIX = f"{campaigns.NODES_FIELD}: "
START_TRIGGERS = (
    ("existing", "the list's members at the first start"),
    ("subscription", "whoever joins the list after the first start"),
    ("both", "the list's members at the first start, and whoever joins after"),
)


@cache
def time_zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def builder_data(scope: AccountScope, viewer: Viewer, campaign: DripCampaign) -> dict[str, Any]:
    """The editor's starting point, embedded in the page as JSON."""
    mailings = scope.session.scalars(
        scope.select(CampaignMailing).order_by(CampaignMailing.subject, CampaignMailing.id)
    )
    return {
        "graph": json.loads(campaign.nodes),
        "mailings": [
            {
                "id": m.uuid,
                "subject": m.subject,
                "url": f"/mailings/{m.uuid}",
                # Its tracked links, as written: what a "clicked" condition can name.
                "links": list(dict.fromkeys(links_in(m.html_part).values())),
            }
            for m in mailings
        ],
        "lists": [{"id": lst.uuid, "name": lst.name} for lst in lists.all_lists(scope)],
        "time_zones": time_zones(),
        "state": campaign.state,
        "editable": viewer.may(Action.EDIT_CONTENT),
        "save_url": f"/drips/{campaign.uuid}/graph",
        "base_url": f"/drips/{campaign.uuid}",
        "live_url": asset_url("builder-live.js"),
        "csrf_token": viewer.csrf_token,
    }


def refusal_errors(exc: DripstoneError | ValidationError) -> list[dict[str, Any]]:
    """The service's refusal as the editor shows it: on the node it names, if any."""
    if isinstance(exc, ValidationError):
        return [
            {"node_id": None, "field": field, "message": message}
            for field, message in errors_of(exc).items()
        ]
    details = exc.details
    path = details.get("path")
    message = exc.message.removeprefix(NODES_PREFIX)
    if path:
        message = message.removeprefix(f"{path}: ")
    return [
        {"node_id": details.get("node"), "field": path or details.get("field"), "message": message}
    ]


def _refusal(exc: DripstoneError | ValidationError) -> JSONResponse:
    return JSONResponse({"errors": refusal_errors(exc)}, status_code=422)


@router.put("/drips/{campaign_id}/graph", include_in_schema=False)
def save_graph(
    campaign_id: str,
    graph: Annotated[dict[str, Any], Body()],
    viewer: Editor,
    session: WriteSession,
) -> Response:
    """Save the editor's graph as `PUT /drip_campaigns/{id}` would; nothing on a refusal."""
    scope = viewer.scope(session)
    campaign = campaigns.get_campaign(scope, campaign_id, lock="change")
    try:
        text = schemas.CampaignFields(drip_campaign_nodes=graph).drip_campaign_nodes
        fields = campaigns.CampaignFields(
            name=None, subscription_list_id=None, start_trigger=None, nodes=text
        )
        campaigns.update_campaign(scope, campaign, fields)
    except (DripstoneError, ValidationError) as exc:
        session.rollback()
        return _refusal(exc)
    return JSONResponse({"saved": True, "graph": json.loads(campaign.nodes)})


def new_campaign_form(scope: AccountScope) -> dict[str, Any]:
    """What the form for a new campaign offers: the account's lists and the start triggers."""
    return {
        "lists": [{"id": lst.uuid, "name": lst.name} for lst in lists.all_lists(scope)],
        "triggers": START_TRIGGERS,
    }


@router.post("/drips", include_in_schema=False)
async def new_campaign(request: Request, viewer: Editor, session: WriteSession) -> Response:
    """A draft with only its trigger, opened in the builder; a refusal shows the form again."""
    form = await request.form()
    scope = viewer.scope(session)
    try:
        checked = schemas.CampaignFields(
            name=str(form.get("name") or ""),
            subscription_list_id=str(form.get("subscription_list_id") or "") or None,
            start_trigger=str(form.get("start_trigger") or "") or None,
            drip_campaign_nodes=EMPTY_GRAPH,
        )
        campaign = campaigns.create_campaign(
            scope,
            campaigns.CampaignFields(
                name=checked.name,
                subscription_list_id=checked.subscription_list_id,
                start_trigger=checked.start_trigger,
                nodes=checked.drip_campaign_nodes,
            ),
        )
    except (DripstoneError, ValidationError) as exc:
        session.rollback()
        context = {
            "title": "New drip campaign",
            "new_form": new_campaign_form(scope),
            "errors": errors_of(exc),
            "typed": typed(form),
        }
        return render(request, "drips/new.html", context, status_code=422)
    return RedirectResponse(f"/drips/{campaign.uuid}", status_code=303)
