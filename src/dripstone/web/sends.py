"""The sends pages: every send of the account, and one send's live progress and analytics,
with its tables downloadable as the same CSV files the API answers with.

The send in a URL is named by the id the API gives it (`campaign_mailing_send_id`, the
send's public id). Everything read here is a counter row, an index range or a keyset page,
so a send of a million messages costs what a send of ten does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from dripstone.analytics import counters, downloads, progress, tables
from dripstone.errors import DripstoneError, NotFound
from dripstone.http import ReadSession, WriteSession
from dripstone.mailings import service
from dripstone.mailings.models import CampaignMailingSend, SendState
from dripstone.web.auth import Editor, SignedIn, Viewer
from dripstone.web.forms import errors_of
from dripstone.web.templating import render

router = APIRouter(include_in_schema=False)

SENDS_PER_PAGE = 25
ROWS_PER_PAGE = 25

Cursor = Annotated[str | None, Query(max_length=36)]
HtmlId = Annotated[int, Path(ge=0, le=1_000_000)]


def _send(viewer: Viewer, session: Session, send_id: str) -> CampaignMailingSend:
    # get_send is the API's lookup: another account's send is a 404 here as there.
    return service.get_send(viewer.scope(session), send_id)


@router.get("/sends")
def sends(
    request: Request, viewer: SignedIn, session: ReadSession, before: Cursor = None
) -> Response:
    """Every send of the account, newest first, a keyset page at a time."""
    found, older = service.sends_before(viewer.scope(session), before, SENDS_PER_PAGE)
    totals = counters.send_totals_by_id(session, viewer.account_id, [s.id for s in found])
    rows = [(send, totals[send.id], progress.rates_of(totals[send.id])) for send in found]
    context = {"title": "Sends", "rows": rows, "older": older, "paged": before is not None}
    return render(request, "sends/list.html", context)


def _progress_context(
    viewer: Viewer, session: Session, send: CampaignMailingSend
) -> dict[str, object]:
    return {"send": send, "progress": progress.send_progress(viewer.scope(session), send)}


@router.get("/sends/{send_id}")
def send_page(
    request: Request,
    send_id: str,
    viewer: SignedIn,
    session: ReadSession,
    after: Cursor = None,
) -> Response:
    """One send: its progress, totals, links and deliveries (a keyset page of them)."""
    return _send_page(request, viewer, session, send_id, after, {})


def _send_page(
    request: Request,
    viewer: Viewer,
    session: Session,
    send_id: str,
    after: str | None,
    errors: dict[str, str],
    status_code: int = 200,
) -> Response:
    scope = viewer.scope(session)
    send = _send(viewer, session, send_id)
    totals = tables.send_totals(scope, send.uuid)
    deliveries, next_after = tables.deliveries_after(scope, send.id, after, ROWS_PER_PAGE)
    context = {
        **_progress_context(viewer, session, send),
        "title": f"Send: {send.subject}",
        "totals": totals,
        "rates": progress.rates_of(totals),
        "links": tables.unique_links(scope, send.uuid, "html_id", "asc"),
        "deliveries": deliveries,
        "next_after": next_after,
        "paged": after is not None,
        "errors": errors,
        "may_cancel": send.state == SendState.SCHEDULED,
    }
    return render(request, "sends/send.html", context, status_code=status_code)


@router.get("/sends/{send_id}/progress")
def send_progress(
    request: Request, send_id: str, viewer: SignedIn, session: ReadSession
) -> Response:
    """The progress fragment a running send's page polls; once the send is finished it comes
    without its polling trigger, so the page stops asking."""
    send = _send(viewer, session, send_id)
    return render(request, "sends/progress.html", _progress_context(viewer, session, send))


@router.post("/sends/{send_id}/cancel")
def cancel(request: Request, send_id: str, viewer: Editor, session: WriteSession) -> Response:
    """Cancel a scheduled send that has not begun (the API's DELETE on its schedule)."""
    send = _send(viewer, session, send_id)
    try:
        service.cancel_schedule(viewer.scope(session), send.job_id)
    except DripstoneError as exc:
        session.rollback()
        return _send_page(request, viewer, session, send_id, None, errors_of(exc), 422)
    return RedirectResponse(f"/sends/{send.uuid}", status_code=303)


@router.get("/sends/{send_id}/links/{html_id}")
def clickers(
    request: Request,
    send_id: str,
    html_id: HtmlId,
    viewer: SignedIn,
    session: ReadSession,
    after: Cursor = None,
) -> Response:
    """Who clicked one link of the send, a keyset page at a time."""
    scope = viewer.scope(session)
    send = _send(viewer, session, send_id)
    link = next(
        (
            row
            for row in tables.unique_links(scope, send.uuid, "html_id", "asc")
            if row["html_id"] == html_id
        ),
        None,
    )
    if link is None:
        raise NotFound(f"the send has no link {html_id}", field="html_id")
    found, next_after = tables.clickers_after(scope, send.id, html_id, after, ROWS_PER_PAGE)
    context = {
        "title": f"Who clicked link {html_id}",
        "send": send,
        "link": link,
        "clickers": found,
        "next_after": next_after,
        "paged": after is not None,
    }
    return render(request, "sends/clickers.html", context)


def _download(name: str, chunks: Iterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/sends/{send_id}/deliveries.csv")
def deliveries_csv(send_id: str, viewer: SignedIn, session: ReadSession) -> Response:
    """Every delivery of the send, as the API's deliveries table CSV."""
    send = _send(viewer, session, send_id)
    account_id, internal = viewer.account_id, send.id

    def read(rows: Session) -> Iterator[tables.Row]:
        return tables.deliveries_table(rows, account_id, internal, None, tables.Page())

    return _download(downloads.DELIVERIES_FILE, downloads.deliveries_csv(read))


@router.get("/sends/{send_id}/links.csv")
def links_csv(send_id: str, viewer: SignedIn, session: ReadSession) -> Response:
    """The send's links with their clicks, as the API's links table CSV."""
    send = _send(viewer, session, send_id)
    rows = tables.unique_links(viewer.scope(session), send.uuid, "created_at", "desc")
    return _download(downloads.LINKS_FILE, downloads.links_csv(rows))


@router.get("/sends/{send_id}/links/{html_id}/clickers.csv")
def clickers_csv(send_id: str, html_id: HtmlId, viewer: SignedIn, session: ReadSession) -> Response:
    """Who clicked one link, as the API's subscribers-by-link CSV."""
    send = _send(viewer, session, send_id)
    account_id, internal = viewer.account_id, send.id

    def read(rows: Session) -> Iterator[tables.Row]:
        return tables.link_clickers(
            rows, account_id, internal, html_id, "created_at", "desc", tables.Page()
        )

    return _download(downloads.CLICKERS_FILE, downloads.clickers_csv(session, account_id, read))
