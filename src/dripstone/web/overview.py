"""The overview: the first page after signing in."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from dripstone.web.auth import SignedIn
from dripstone.web.templating import render

router = APIRouter()


@router.get("/", include_in_schema=False)
def overview(request: Request, viewer: SignedIn) -> Response:
    return render(request, "overview.html", {"title": "Overview"})
