"""Routes of analytics: a send's totals, its tables, and its tracking links.

The tables that are not paged by default stream (JSON, or CSV where `Accept: text/csv`
asks for it); `items` and `page` page them when given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from dripstone.analytics import downloads, export, schemas, tables
from dripstone.errors import BadRequest
from dripstone.http import STANDARD_ERRORS, Data, ReadScope
from dripstone.wire import Uuid

router = APIRouter(responses=STANDARD_ERRORS)

CSV = "text/csv"
CSV_CONTENT: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}}}, "description": "JSON, or CSV"}
}
SEND_ID_DOC = "the send's id"

SendId = Annotated[Uuid | None, Query(description=SEND_ID_DOC)]
RequiredSendId = Annotated[Uuid, Query(description=SEND_ID_DOC)]
Items = Annotated[
    int | None, Query(ge=1, le=100_000, description="extension: rows per page; absent: all rows")
]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000, description="extension: with items")]


def _page(items: int | None, page: int) -> tables.Page:
    if items is None and page != 1:
        raise BadRequest("page: give items too, the number of rows per page", field="page")
    return tables.Page(items=items, page=page)


def _wants_csv(request: Request) -> bool:
    return CSV in request.headers.get("accept", "")


def _json(read: Callable[[Session], Iterator[tables.Row]]) -> StreamingResponse:
    return StreamingResponse(
        export.json_envelope(tables.stream(read)), media_type="application/json"
    )


def _csv(name: str, chunks: Iterator[bytes]) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get("/analytics/campaign_mailing_send_totals", tags=["analytics"])
def send_totals(
    scope: ReadScope, campaign_mailing_send_id: SendId = None
) -> Data[schemas.SendTotals]:
    """Totals of one send, or of every campaign send of the account without an id."""
    totals = tables.send_totals(scope, campaign_mailing_send_id)
    return Data(data=schemas.SendTotals(**asdict(totals)))


@router.get(
    "/analytics/campaign_mailing_sends_table",
    tags=["analytics"],
    response_model=Data[list[schemas.SendRow]],
)
def sends_table(
    scope: ReadScope,
    search: Annotated[
        str | None,
        Query(max_length=2000, description='a JSON object, {"subscription_list_name": "News"}'),
    ] = None,
    order_by: tables.SendOrder = "created_at",
    order: tables.Order = "desc",
    items: Items = None,
    page: PageNumber = 1,
) -> StreamingResponse:
    """The sends that have begun; `search` matches ids exactly and list names in part."""
    found = tables.parse_search(search)
    paging = _page(items, page)
    account_id = scope.account_id
    return _json(
        lambda session: tables.sends_table(session, account_id, found, order_by, order, paging)
    )


@router.get(
    "/analytics/tracking_links_by_unique_link",
    tags=["analytics"],
    response_model=Data[list[schemas.LinkRow]],
    responses=CSV_CONTENT,
)
def links_by_unique_link(
    request: Request,
    scope: ReadScope,
    campaign_mailing_send_id: RequiredSendId,
    order_by: tables.LinkOrder = "created_at",
    order: tables.Order = "desc",
) -> Response:
    """Each tracked link of the send's HTML (created_at orders as html_id) and its clicks."""
    rows = tables.unique_links(scope, campaign_mailing_send_id, order_by, order)
    if _wants_csv(request):
        return _csv(downloads.LINKS_FILE, downloads.links_csv(rows))
    found = Data[list[schemas.LinkRow]](data=[schemas.LinkRow(**row) for row in rows])
    return Response(found.model_dump_json(), media_type="application/json")


@router.get(
    "/analytics/subscribers_by_tracking_link",
    tags=["analytics"],
    response_model=Data[list[schemas.ClickerRow]],
    responses=CSV_CONTENT,
)
def subscribers_by_tracking_link(
    request: Request,
    scope: ReadScope,
    campaign_mailing_send_id: RequiredSendId,
    html_id: Annotated[int, Query(ge=0, le=1_000_000, description="the link's number")],
    order_by: tables.SubscriberOrder = "created_at",
    order: tables.Order = "desc",
    items: Items = None,
    page: PageNumber = 1,
) -> StreamingResponse:
    """The subscribers who clicked one link of the send (order_by sorts the subscribers)."""
    paging = _page(items, page)
    send = tables.send_of(scope, campaign_mailing_send_id)
    send_id = send.id if send is not None else None
    account_id = scope.account_id

    def read(session: Session) -> Iterator[tables.Row]:
        return tables.link_clickers(session, account_id, send_id, html_id, order_by, order, paging)

    if not _wants_csv(request):
        return _json(read)
    return _csv(downloads.CLICKERS_FILE, downloads.clickers_csv(scope.session, account_id, read))


@router.get(
    "/analytics/campaign_mailing_deliveries_table",
    tags=["analytics"],
    response_model=Data[list[schemas.DeliveryRow]],
    responses=CSV_CONTENT,
)
def deliveries_table(
    request: Request,
    scope: ReadScope,
    campaign_mailing_send_id: SendId = None,
    campaign_mailing_id: Annotated[Uuid | None, Query(description="the mailing's id")] = None,
    items: Items = None,
    page: PageNumber = 1,
) -> StreamingResponse:
    """Every campaign delivery of a send, or of every send of a mailing (one id is needed)."""
    tables.either_id_required(campaign_mailing_send_id, campaign_mailing_id)
    paging = _page(items, page)
    send_id = mailing_id = None
    named_nothing = False
    if campaign_mailing_send_id is not None:
        send = tables.send_of(scope, campaign_mailing_send_id)
        send_id = send.id if send is not None else None
        named_nothing = send is None
    if campaign_mailing_id is not None:
        mailing = tables.mailing_of(scope, campaign_mailing_id)
        mailing_id = mailing.id if mailing is not None else None
        named_nothing = named_nothing or mailing is None
    account_id = scope.account_id

    def read(session: Session) -> Iterator[tables.Row]:
        if named_nothing:
            return iter(())
        return tables.deliveries_table(session, account_id, send_id, mailing_id, paging)

    if _wants_csv(request):
        return _csv(downloads.DELIVERIES_FILE, downloads.deliveries_csv(read))
    return _json(read)


@router.get(
    "/tracking_links",
    tags=["tracking links"],
    response_model=Data[list[schemas.TrackingLinkRow]],
)
def tracking_links(
    scope: ReadScope,
    campaign_mailing_send_id: RequiredSendId,
    order_by: tables.TrackingLinkOrder = "created_at",
    order: tables.Order = "desc",
    items: Items = None,
    page: PageNumber = 1,
) -> StreamingResponse:
    """Each tracked link of each delivery of the send, with its clicks."""
    paging = _page(items, page)
    send = tables.send_of(scope, campaign_mailing_send_id)
    send_id, html = (send.id, send.html_part) if send is not None else (None, None)
    account_id = scope.account_id
    return _json(
        lambda session: tables.tracking_links(session, account_id, send_id, html, order, paging)
    )
