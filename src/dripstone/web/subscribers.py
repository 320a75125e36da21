"""The subscribers pages: search and filter the account's subscribers a page at a time, act
on a selection (add to a list, unsubscribe, delete) and watch the job do it. One
subscriber's page is in `subscriber`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from pydantic import ValidationError
from starlette.datastructures import ImmutableMultiDict
from starlette.responses import RedirectResponse, Response

from dripstone.db import AccountScope
from dripstone.errors import BadRequest, DripstoneError, NotFound
from dripstone.http import ReadSession, WriteSession
from dripstone.jobs.models import JobState
from dripstone.jobs.service import get_job
from dripstone.subscribers import bulk, lists, schemas, segments
from dripstone.subscribers.browse import SCAN, subscriber_page
from dripstone.subscribers.models import DynamicList, SubscriptionList
from dripstone.subscribers.selection import Selection, count_selected
from dripstone.subscribers.subscriptions import (
    BulkSelectionRequest,
    change_subscriptions,
    requested_selection,
    start_bulk_change,
)
from dripstone.web.auth import Editor, SignedIn
from dripstone.web.filter_rows import (
    OPERATORS,
    FilterRow,
    field_choices,
    groups_of,
    row_errors,
    rows_of,
)
from dripstone.web.forms import FORM, errors_of
from dripstone.web.templating import render
from dripstone.wire import is_uuid

router = APIRouter(include_in_schema=False)
Params = ImmutableMultiDict[str, Any]  # a query string or a posted form

PAGE_SIZE = 50
BulkAction = Literal["add_to_list", "unsubscribe", "delete"]
ACTIONS: dict[str, str] = {
    "add_to_list": "Add to list",
    "unsubscribe": "Unsubscribe from all mail",
    "delete": "Delete",
}
BULK_JOB_KINDS = {"bulk_subscription", bulk.BULK_ADD_TO_LIST_JOB, bulk.BULK_DELETE_JOB}
# What a page says after a change: chosen by a code in the address, never text from it.
NOTICES = {
    "saved": "Saved",
    "unsubscribed_list": "Unsubscribed from the list",
    "unsubscribed_all": "Unsubscribed from all mail",
    "opted_out": "{n} unsubscribed from all mail",
    "deleted": "{n} deleted",
    "added": "{n} added to the list",
}
_NOT_A_WORD = re.compile(r"[\W_]+")


# --- the selection a page shows --------------------------------------------------------------


@dataclass
class Chosen:
    """What the subscribers page shows: a list or a dynamic list, narrowed by a search and
    filter rows; validated with the API's select-all schema."""

    list_id: str = ""
    segment_id: str = ""
    search: str = ""
    rows: list[FilterRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    request: BulkSelectionRequest | None = None
    segment: DynamicList | None = None
    base_list: SubscriptionList | None = None

    @property
    def dynamic(self) -> bool:
        return self.segment is not None

    @property
    def everyone(self) -> bool:
        """All contacts, unfiltered: paging walks the ids alone, no stretch to bound."""
        request = self.request
        return (
            request is not None
            and not self.dynamic
            and self.base_list is not None
            and self.base_list.is_default
            and request.search == "*"
            and not request.filters
        )

    def query(self, **more: Any) -> str:
        """The query string that shows this selection again (with `more` on top)."""
        pairs: list[tuple[str, str]] = []
        if self.segment_id:
            pairs.append(("segment", self.segment_id))
        else:
            if self.list_id:
                pairs.append(("list", self.list_id))
            if self.search:
                pairs.append(("search", self.search))
            for row in self.rows:
                if row.field:
                    pairs += [("join", row.join), ("field", row.field), ("op", row.op)]
                    pairs.append(("terms", row.terms))
        pairs += [(k, str(v)) for k, v in more.items() if v is not None]
        return urlencode(pairs)


def choose(scope: AccountScope, params: Params) -> Chosen:
    """Read the selection from a query string or form; `errors` says what is wrong with it."""
    chosen = Chosen(
        list_id=str(params.get("list") or "").strip(),
        segment_id=str(params.get("segment") or "").strip(),
        search=str(params.get("search") or "").strip()[:255],
        rows=rows_of(params),
    )
    if chosen.segment_id:
        chosen.segment = scope.by_uuid(DynamicList, chosen.segment_id)
        if chosen.segment is None:
            chosen.errors["segment"] = "no dynamic list with this id in this account"
            return chosen
        chosen.request = BulkSelectionRequest(chosen.segment_id, "*", [], [])
        return chosen
    base = scope.by_uuid(SubscriptionList, chosen.list_id) if chosen.list_id else None
    if chosen.list_id and base is None:
        chosen.errors["list"] = "no list with this id in this account"
        return chosen
    chosen.base_list = base or lists.default_list(scope)
    # A search matches words: "ann@example.com" looks for "ann", "example" and "com".
    words = _NOT_A_WORD.sub(" ", chosen.search).strip() or "*"
    groups, origin = groups_of(chosen.rows)
    try:
        checked = schemas.BulkSelection(
            from_subscription_list_id=chosen.base_list.uuid, search=words, filters=groups
        )
    except ValidationError as exc:
        chosen.errors = row_errors(errors_of(exc), groups, origin, "filters")
        return chosen
    chosen.request = BulkSelectionRequest(
        list_id=chosen.base_list.uuid,
        search=checked.search,
        filters=[[c.model_dump() for c in group] for group in checked.filters],
        except_ids=[],
    )
    return chosen


def selection_of(scope: AccountScope, chosen: Chosen) -> Selection:
    """The subscribers a valid choice names (`chosen.errors` empty)."""
    assert chosen.request is not None
    return requested_selection(scope, chosen.request, dynamic=chosen.dynamic)


def notice_of(request: Request) -> str:
    """The message a redirect after a change asked for (`notice` code, `n` count)."""
    template = NOTICES.get(request.query_params.get("notice", ""), "")
    count = request.query_params.get("n", "0")
    return template.format(n=f"{int(count):,}" if count.isdigit() and len(count) < 10 else "0")


def _keyset(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 18:  # within a BIGINT
        raise BadRequest(f"{name}: not a page position", field=name)
    return int(value)


def _page_context(scope: AccountScope) -> dict[str, Any]:
    return {
        "lists": lists.all_lists(scope),
        "segments": segments.list_dynamic_lists(scope),
        "fields": field_choices(scope),
        "operators": OPERATORS,
        "actions": ACTIONS,
    }


@router.get("/subscribers")
def subscribers_page(
    request: Request,
    viewer: SignedIn,
    session: ReadSession,
    before: Annotated[str | None, Query(max_length=20)] = None,
    after: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    scope = viewer.scope(session)
    chosen = choose(scope, request.query_params)
    page = None
    if chosen.request is not None:
        try:
            page = subscriber_page(
                scope,
                selection_of(scope, chosen),
                limit=PAGE_SIZE,
                before_id=_keyset(before, "before"),
                after_id=_keyset(after, "after"),
                scan=None if chosen.everyone else SCAN,
            )
        except DripstoneError as exc:
            if exc.status != 422:
                raise
            chosen.errors.update(errors_of(exc))
    if not chosen.rows or chosen.rows[-1].field:
        chosen.rows.append(FilterRow())
    context = {
        "title": "Subscribers",
        "chosen": chosen,
        "page": page,
        "errors": chosen.errors,
        "first_page": before is None and after is None,
        "scan": SCAN,
        "notice": notice_of(request),
        **_page_context(scope),
    }
    status = 422 if chosen.errors else 200
    return render(request, "subscribers/list.html", context, status_code=status)


# --- bulk actions ------------------------------------------------------------------------------


def _action(value: Any) -> BulkAction:
    if value not in ACTIONS:
        raise BadRequest("action: choose add to list, unsubscribe or delete", field="action")
    return value  # type: ignore[no-any-return]


def _ids(values: list[str]) -> list[str]:
    ids = [v for v in values if v]
    for value in ids:
        if not is_uuid(value):
            raise BadRequest(f"ids: {value[:60]!r} is not a subscriber id", field="ids")
    if len(ids) > schemas.MAX_BULK_ROWS:
        raise BadRequest(f"ids: at most {schemas.MAX_BULK_ROWS} at once", field="ids")
    return ids


def _bulk_context(scope: AccountScope, params: Params) -> tuple[dict[str, Any], Chosen]:
    action = _action(params.get("action"))
    ids = _ids([str(v) for v in params.getlist("ids")])
    everyone = params.get("all") == "1"
    chosen = choose(scope, params)
    context: dict[str, Any] = {
        "action": action,
        "action_label": ACTIONS[action],
        "ids": ids,
        "everyone": everyone,
        "chosen": chosen,
        "target": str(params.get("target") or ""),
        "errors": dict(chosen.errors),
        "count": len(ids),
        "lists": [lst for lst in lists.all_lists(scope) if not lst.is_default],
    }
    if everyone and chosen.request is not None:
        try:
            context["count"] = count_selected(scope, selection_of(scope, chosen))
        except DripstoneError as exc:
            context["errors"].update(errors_of(exc))
    elif not everyone and not ids:
        context["errors"][FORM] = "tick the subscribers to act on, or select all matching"
    return context, chosen


@router.get("/subscribers/bulk")
def confirm_bulk(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    """Say what a bulk action will do, and to how many, before it is done."""
    context, _ = _bulk_context(viewer.scope(session), request.query_params)
    status = 422 if context["errors"] else 200
    return render(request, "subscribers/bulk.html", {"title": "Confirm", **context}, status)


@router.post("/subscribers/bulk")
async def run_bulk(request: Request, viewer: Editor, session: WriteSession) -> Response:
    form = await request.form()
    scope = viewer.scope(session)
    context, chosen = _bulk_context(scope, form)
    action, target = context["action"], context["target"]
    if context["errors"]:
        return render(request, "subscribers/bulk.html", {"title": "Confirm", **context}, 422)
    try:
        if context["everyone"]:
            assert chosen.request is not None
            if action == "unsubscribe":
                job = start_bulk_change(
                    scope, "unsubscribe", chosen.request, dynamic=chosen.dynamic
                )
            elif action == "delete":
                job = bulk.start_delete(scope, chosen.request, dynamic=chosen.dynamic)
            else:
                job = bulk.start_add_to_list(scope, chosen.request, target, dynamic=chosen.dynamic)
            return RedirectResponse(f"/subscribers/jobs/{job.id}", status_code=303)
        ids = context["ids"]
        if action == "unsubscribe":
            done = len(change_subscriptions(scope, "unsubscribe", ids, None))
            notice = {"notice": "opted_out", "n": done}
        elif action == "delete":
            notice = {"notice": "deleted", "n": bulk.delete(scope, ids)}
        else:
            notice = {"notice": "added", "n": bulk.add_to_list(scope, ids, target)}
    except DripstoneError as exc:
        session.rollback()
        if exc.status != 422:
            raise
        found = errors_of(exc)
        context["errors"] = {
            ("target" if k == "subscription_list_id" else k): v for k, v in found.items()
        }
        return render(request, "subscribers/bulk.html", {"title": "Confirm", **context}, 422)
    return RedirectResponse(f"/subscribers?{chosen.query(**notice)}", status_code=303)


def _job_context(scope: AccountScope, jid: str) -> dict[str, Any]:
    job = get_job(scope, jid) if is_uuid(jid) else None
    if job is None or job.kind not in BULK_JOB_KINDS:
        raise NotFound(f"job {jid} not found", field="jid")
    finished = job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    kind = job.kind
    if kind == "bulk_subscription":
        what = "Unsubscribing" if job.payload.get("action") == "unsubscribe" else "Subscribing"
    elif kind == bulk.BULK_DELETE_JOB:
        what = "Deleting"
    else:
        what = "Adding to the list"
    return {"job": job, "finished": finished, "what": what}


@router.get("/subscribers/jobs/{jid}")
def bulk_job_page(jid: str, request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    context = _job_context(viewer.scope(session), jid)
    return render(request, "subscribers/job.html", {"title": "Bulk action", **context})


@router.get("/subscribers/jobs/{jid}/progress")
def bulk_job_progress(
    jid: str, request: Request, viewer: SignedIn, session: ReadSession
) -> Response:
    """The progress fragment: htmx asks for it again every second until the job ends."""
    context = _job_context(viewer.scope(session), jid)
    return render(request, "subscribers/_progress.html", context)
