"""The overview: the first page after signing in. The latest sends and their rates, the drip
campaigns and who waits in them, 30 days of mail as a chart drawn on the server, the bounce
rate against the mailbox providers' line, and what to do first on an empty account."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from dripstone.analytics import counters
from dripstone.analytics import overview as summary
from dripstone.http import ReadSession
from dripstone.web.auth import SignedIn
from dripstone.web.chart_drawing import Series, draw_days
from dripstone.web.templating import render

router = APIRouter()


@router.get("/", include_in_schema=False)
def overview(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    found = summary.overview(viewer.scope(session))
    days = found.month.days
    chart = draw_days(
        [d.day for d in days],
        [
            Series("delivered", "Delivered", [d.delivered for d in days]),
            Series("opened", "Opened", [d.opened for d in days]),
            Series("clicked", "Clicked", [d.clicked for d in days]),
        ],
    )
    return render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "found": found,
            "chart": chart,
            "limit": counters.MAILBOX_PROVIDER_LIMIT,
        },
    )
