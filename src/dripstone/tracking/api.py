"""Public routes recipients reach from their messages: open pixel, click redirect, unsubscribe.

No API key: each URL carries a token signed with the installation's secret, so it cannot be
forged, enumerated or turned into an open redirect. A token that does not verify is a 404.
"""

from __future__ import annotations

import base64
from contextlib import suppress
from html import escape

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from dripstone.delivery import pipeline
from dripstone.delivery.signing import CLICK_ROUTE, OPEN_ROUTE, UNSUBSCRIBE_ROUTE
from dripstone.http import WriteSession
from dripstone.tracking import service, writer

router = APIRouter(tags=["recipients"], include_in_schema=False)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
PREFIX = "/t/"  # every recipient-facing path starts with it


# The open and click routes are plain Starlette endpoints: no dependencies to solve and no
# parameters to validate, which would cost more than the rest of such a request.


async def open_pixel(request: Request) -> Response:
    """A 1x1 transparent GIF, once the open is recorded."""
    tokens = pipeline.pipeline().tokens
    token, user_agent = request.path_params["token"], request.headers.get("user-agent")
    hit = service.open_hit(tokens, token, user_agent, _client(request))
    if hit is None:
        return not_found_page()
    try:
        delivery_exists = await writer.record(hit)
    except writer.HitNotRecorded:
        # No pixel without the event: a mail client fetches a failed image again.
        return Response(status_code=503, headers={**NO_STORE, "Retry-After": "1"})
    if not delivery_exists:
        return not_found_page()
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


async def click(request: Request) -> Response:
    """Redirects to the link's own address, once the click is recorded."""
    tokens = pipeline.pipeline().tokens
    token, user_agent = request.path_params["token"], request.headers.get("user-agent")
    hit = service.click_hit(tokens, token, user_agent, _client(request))
    if hit is None or hit.url is None:
        return not_found_page()
    # A deleted delivery still redirects: the link was ours and the reader expects the page.
    with suppress(writer.HitNotRecorded):
        # So does a click that could not be recorded: the reader gets the page, and the
        # event is lost (the writer's log line names its delivery and link).
        await writer.record(hit)
    return RedirectResponse(hit.url, status_code=302, headers=NO_STORE)


router.add_route(OPEN_ROUTE, open_pixel, methods=["GET"], include_in_schema=False)
router.add_route(CLICK_ROUTE, click, methods=["GET"], include_in_schema=False)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>body{{font-family:system-ui,sans-serif;"
        "max-width:32rem;margin:4rem auto;padding:0 1rem;line-height:1.5}"
        "button{font-size:1rem;padding:.5rem 1rem}</style></head>"
        f"<body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=NO_STORE)


def not_found_page() -> HTMLResponse:
    """What a recipient sees for a link that is mistyped, cut short or not from us."""
    return _page(
        "Link not found",
        "<p>This link is not valid. If you copied it from an email, check that it is whole.</p>",
        status=404,
    )


@router.get(UNSUBSCRIBE_ROUTE)
def unsubscribe_page(token: str, session: WriteSession) -> HTMLResponse:
    """A confirmation page; nothing changes until its button is pressed (link scanners GET)."""
    target = service.unsubscribe_target(session, pipeline.pipeline().tokens, token)
    if target is None:
        return not_found_page()
    what = f"the list “{escape(target.list_name)}”" if target.list_name else "all our emails"
    return _page(
        "Unsubscribe",
        f"<p>Unsubscribe {escape(target.delivery.email)} from {what}?</p>"
        "<form method=post><button type=submit>Unsubscribe</button></form>",
    )


@router.post(UNSUBSCRIBE_ROUTE)
def unsubscribe(token: str, session: WriteSession) -> HTMLResponse:
    """Unsubscribes at once: the page's button, and RFC 8058 one-click from the mail client."""
    target = service.unsubscribe_target(session, pipeline.pipeline().tokens, token)
    if target is None:
        return not_found_page()
    service.unsubscribe(session, target)
    what = f"the list “{escape(target.list_name)}”" if target.list_name else "all our emails"
    return _page(
        "Unsubscribed", f"<p>{escape(target.delivery.email)} is unsubscribed from {what}.</p>"
    )
