"""The lists pages: lists with their subscriber counts (create, rename, delete) and dynamic
lists, whose filter is built in a form of rows and validated by the API's schema."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from markupsafe import escape
from pydantic import ValidationError
from starlette.datastructures import FormData, ImmutableMultiDict
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dripstone.db import AccountScope
from dripstone.errors import DripstoneError
from dripstone.http import ReadSession, WriteSession
from dripstone.subscribers import lists, schemas, segments
from dripstone.subscribers.models import DynamicList
from dripstone.web.auth import Editor, SignedIn
from dripstone.web.filter_rows import (
    OPERATORS,
    FilterRow,
    field_choices,
    groups_of,
    row_errors,
    rows_from_groups,
    rows_of,
)
from dripstone.web.forms import errors_of
from dripstone.web.templating import number, render

router = APIRouter(include_in_schema=False)
# What the page says after a change: chosen by a code in the address, never text from it.
NOTICES = {
    "created": "List created",
    "renamed": "List renamed",
    "deleted": "List deleted",
    "segment_saved": "Dynamic list saved",
    "segment_deleted": "Dynamic list deleted",
}


def _lists_page(
    request: Request,
    scope: AccountScope,
    *,
    errors: dict[str, str] | None = None,
    typed: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    # Counts come after the page, one request per list: counting a million members is
    # the slow part, and the names are what the page is for.
    every_list = lists.all_lists(scope)
    context = {
        "title": "Lists",
        "lists": every_list,
        "segments": segments.list_dynamic_lists(scope),
        "list_names": {lst.id: lst.name for lst in every_list},
        "errors": errors or {},
        "typed": typed or {},
        "notice": NOTICES.get(request.query_params.get("notice", ""), ""),
    }
    return render(request, "lists/index.html", context, status_code=status)


@router.get("/lists")
def lists_page(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    return _lists_page(request, viewer.scope(session))


def _list_name(form: FormData) -> tuple[str | None, dict[str, str]]:
    try:
        return schemas.ListWrite(name=str(form.get("name") or "")).list_name, {}
    except ValidationError as exc:
        return None, {"name": next(iter(errors_of(exc).values()))}


@router.post("/lists")
async def create_list(request: Request, viewer: Editor, session: WriteSession) -> Response:
    scope = viewer.scope(session)
    form = await request.form()
    name, errors = _list_name(form)
    if name is not None:
        try:
            lists.create_list(scope, name)
        except DripstoneError as exc:
            session.rollback()
            errors = errors_of(exc)
    if errors:
        typed = {"name": str(form.get("name") or "")}
        return _lists_page(request, scope, errors=errors, typed=typed, status=422)
    return RedirectResponse("/lists?notice=created", status_code=303)


@router.post("/lists/{list_id}/rename")
async def rename_list(
    list_id: str, request: Request, viewer: Editor, session: WriteSession
) -> Response:
    scope = viewer.scope(session)
    lst = lists.get_list(scope, list_id)
    form = await request.form()
    name, errors = _list_name(form)
    if name is not None:
        try:
            lists.rename_list(scope, lst.uuid, name)
        except DripstoneError as exc:
            session.rollback()
            errors = errors_of(exc)
    if errors:
        message = next(iter(errors.values()))
        typed = {f"rename-{lst.uuid}": str(form.get("name") or "")}
        return _lists_page(
            request, scope, errors={f"rename-{lst.uuid}": message}, typed=typed, status=422
        )
    return RedirectResponse("/lists?notice=renamed", status_code=303)


@router.post("/lists/{list_id}/delete")
def delete_list(list_id: str, request: Request, viewer: Editor, session: WriteSession) -> Response:
    scope = viewer.scope(session)
    lst = lists.get_list(scope, list_id)
    try:
        lists.delete_list(scope, lst.uuid)
    except DripstoneError as exc:
        session.rollback()
        if exc.status != 422:
            raise
        return _lists_page(request, scope, errors={f"delete-{lst.uuid}": exc.message}, status=422)
    return RedirectResponse("/lists?notice=deleted", status_code=303)


# --- dynamic lists -----------------------------------------------------------------------------


def _segment_form(
    request: Request,
    scope: AccountScope,
    *,
    segment: DynamicList | None,
    typed: dict[str, str],
    rows: list[FilterRow],
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    if not rows or rows[-1].field:
        rows = [*rows, FilterRow()]
    context = {
        "title": f"Dynamic list {segment.name}" if segment else "New dynamic list",
        "segment": segment,
        "typed": typed,
        "rows": rows,
        "errors": errors or {},
        "lists": lists.all_lists(scope),
        "fields": field_choices(scope),
        "operators": OPERATORS,
    }
    return render(request, "lists/segment.html", context, status_code=status)


def _typed_segment(params: ImmutableMultiDict[str, Any]) -> dict[str, str]:
    return {
        name: str(params.get(name) or "") for name in ("name", "subscription_list_id", "search")
    }


@router.get("/lists/segments/new")
def new_segment(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    """The form; "Add a row" comes back here with what was typed and one more row."""
    params = request.query_params
    return _segment_form(
        request,
        viewer.scope(session),
        segment=None,
        typed=_typed_segment(params),
        rows=rows_of(params),
    )


@router.get("/lists/segments/{segment_id}")
def edit_segment(
    segment_id: str, request: Request, viewer: SignedIn, session: ReadSession
) -> Response:
    scope = viewer.scope(session)
    segment = segments.get_dynamic_list(scope, segment_id)
    base = lists.list_uuid(scope, segment.subscription_list_id)
    typed = {
        "name": segment.name,
        "subscription_list_id": base or "",
        "search": "" if segment.search == "*" else segment.search,
    }
    rows = rows_from_groups(segment.filters)
    return _segment_form(request, scope, segment=segment, typed=typed, rows=rows)


async def _save_segment(
    request: Request, viewer: Editor, session: WriteSession, segment_id: str | None
) -> Response:
    scope = viewer.scope(session)
    segment = segments.get_dynamic_list(scope, segment_id) if segment_id else None
    form = await request.form()
    typed = _typed_segment(form)
    rows = rows_of(form)
    groups, origin = groups_of(rows)
    errors: dict[str, str] = {}
    try:
        fields = schemas.DynamicListFields(
            name=typed["name"],
            subscription_list_id=typed["subscription_list_id"] or None,
            search=typed["search"].strip() or "*",
            filters=groups,
        )
        segments.save_dynamic_list(scope, fields, segment.uuid if segment else None)
    except ValidationError as exc:
        errors = row_errors(errors_of(exc), groups, origin, "filters")
    except DripstoneError as exc:
        session.rollback()
        if exc.status != 422:
            raise
        found = {k.removeprefix("dynamic_list."): v for k, v in errors_of(exc).items()}
        errors = row_errors(found, groups, origin, "filters")
    if errors:
        return _segment_form(
            request, scope, segment=segment, typed=typed, rows=rows, errors=errors, status=422
        )
    return RedirectResponse("/lists?notice=segment_saved", status_code=303)


@router.post("/lists/segments")
async def create_segment(request: Request, viewer: Editor, session: WriteSession) -> Response:
    return await _save_segment(request, viewer, session, None)


@router.post("/lists/segments/{segment_id}")
async def update_segment(
    segment_id: str, request: Request, viewer: Editor, session: WriteSession
) -> Response:
    return await _save_segment(request, viewer, session, segment_id)


@router.post("/lists/segments/{segment_id}/delete")
def delete_segment(segment_id: str, viewer: Editor, session: WriteSession) -> Response:
    segments.delete_dynamic_list(viewer.scope(session), segment_id)
    return RedirectResponse("/lists?notice=segment_deleted", status_code=303)


@router.get("/lists/{list_id}/count")
def list_count(list_id: str, viewer: SignedIn, session: ReadSession) -> Response:
    """A list's subscriber count as the API counts it, loaded after the page."""
    scope = viewer.scope(session)
    return HTMLResponse(number(lists.list_count(scope, lists.get_list(scope, list_id))))


@router.get("/lists/segments/{segment_id}/count")
def segment_count(segment_id: str, viewer: SignedIn, session: ReadSession) -> Response:
    """A dynamic list's count, loaded after the page (it is a query over its members)."""
    scope = viewer.scope(session)
    segment = segments.get_dynamic_list(scope, segment_id)
    try:
        count = number(segments.dynamic_list_count(scope, segment))
    except DripstoneError as exc:
        count = f"— ({exc.message})"
    return HTMLResponse(str(escape(count)))
