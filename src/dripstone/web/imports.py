"""The import pages (upload a CSV file, map its columns, follow the job) and the export of
subscribers as CSV.

Each page calls the services the API calls: the upload is checked by the import's own scan,
the start is the import job of `POST /subscribers_import`, the rejected rows are the file
`GET /subscribers_import/{jid}/rejected` serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Request, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from dripstone import db
from dripstone.analytics.export import csv_rows
from dripstone.db import AccountScope
from dripstone.errors import DripstoneError, Invalid, NotFound
from dripstone.http import ReadSession, WriteSession
from dripstone.jobs.models import Job, JobState
from dripstone.jobs.service import get_job, recent_jobs
from dripstone.subscribers import custom_fields, exporting, importing, lists, staging
from dripstone.web import subscribers as subscribers_pages
from dripstone.web.auth import Editor, SignedIn
from dripstone.web.forms import FORM, typed
from dripstone.web.templating import render
from dripstone.wire import is_uuid

router = APIRouter(include_in_schema=False)

UPLOAD_PATH = "/imports"
NEW_FIELD = "new"  # the choice of a custom field named in the column's text box
FIELD_LABELS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "phone_number": "Phone number",
}
EXISTING_CHOICES = {
    "skip": "Leave them as they are",
    "update": "Update them with the file's values (empty cells keep what is there)",
}
RECENT_IMPORTS = 10
FINISHED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


def _message(exc: DripstoneError) -> str:
    """The refusal without the `field: ` the API puts first (the page shows it at the field)."""
    field = exc.details.get("field")
    message = exc.message.removeprefix(f"{field}: ") if field else exc.message
    return message[:1].upper() + message[1:]


# --- upload ------------------------------------------------------------------------------------


def _upload_page(
    request: Request, scope: AccountScope, error: str = "", status: int = 200
) -> Response:
    context = {
        "title": "Import subscribers",
        "error": error,
        "max_rows": importing.MAX_IMPORT_ROWS,
        "recent": [
            (job, importing.import_counts(job) or {})
            for job in recent_jobs(scope, importing.IMPORT_JOB, RECENT_IMPORTS)
        ],
    }
    return render(request, "imports/upload.html", context, status_code=status)


@router.get("/imports")
def upload_page(request: Request, viewer: Editor, session: ReadSession) -> Response:
    """The form that uploads a CSV file, and the latest imports."""
    return _upload_page(request, viewer.scope(session))


@router.post(UPLOAD_PATH)
def upload(
    request: Request,
    viewer: Editor,
    session: ReadSession,
    file: Annotated[UploadFile | None, File()] = None,
) -> Response:
    """Keep and check the file, then show its columns to map (or say what is wrong with it)."""
    if file is None or not file.filename:
        return _upload_page(request, viewer.scope(session), "Choose a CSV file to upload.", 422)
    try:
        staged = staging.stage_upload(viewer.scope(session), file.file)
    except DripstoneError as exc:
        message = f"{file.filename}: {_message(exc)}"
        return _upload_page(request, viewer.scope(session), message, exc.status)
    return RedirectResponse(f"/imports/{staged.token}", status_code=303)


# --- mapping -----------------------------------------------------------------------------------


def _choices_of(header: list[str], targets: list[str], names: set[str]) -> dict[str, str]:
    """The form's values for a mapping: the select of each column, and its new field's name."""
    chosen: dict[str, str] = {}
    for i, (column, target) in enumerate(zip(header, targets, strict=True)):
        custom = target.removeprefix(importing.CUSTOM_PREFIX)
        if target.startswith(importing.CUSTOM_PREFIX) and custom not in names:
            chosen[f"column-{i}"] = NEW_FIELD
            chosen[f"custom-{i}"] = custom
        else:
            chosen[f"column-{i}"] = target
            chosen[f"custom-{i}"] = column.strip()
    return chosen


def _mapping_page(
    request: Request,
    scope: AccountScope,
    staged: staging.StagedUpload,
    chosen: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    fields = [f.name for f in custom_fields.list_field_types(scope)]
    if chosen is None:
        suggested = staging.suggested_mapping(staged.header, fields)
        chosen = _choices_of(staged.header, suggested, set(fields))
        chosen["existing"] = "skip"
    context: dict[str, Any] = {
        "title": "Map the columns",
        "staged": staged,
        "fields": FIELD_LABELS,
        "custom_fields": fields,
        "custom_prefix": importing.CUSTOM_PREFIX,
        "new_field": NEW_FIELD,
        "lists": lists.all_lists(scope),
        "existing_choices": EXISTING_CHOICES,
        "chosen": chosen,
        "errors": errors or {},
        "has_email": any(chosen.get(f"column-{i}") == "email" for i in range(len(staged.header))),
    }
    return render(request, "imports/mapping.html", context, status_code=status)


@router.get("/imports/{token}")
def mapping_page(request: Request, token: str, viewer: Editor, session: ReadSession) -> Response:
    """Each column of the upload, what it should feed, and a preview of the first rows."""
    scope = viewer.scope(session)
    return _mapping_page(request, scope, staging.staged_upload(scope, token))


def _mapping_of(
    header: list[str], form: dict[str, str], names: set[str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The mapping the form chose (CSV header → target), and the fields it got wrong."""
    mapping: dict[str, str] = {}
    errors: dict[str, str] = {}
    allowed = {"", *FIELD_LABELS, *(importing.CUSTOM_PREFIX + name for name in names)}
    for i, column in enumerate(header):
        choice = form.get(f"column-{i}", "")
        if choice == NEW_FIELD:
            name = form.get(f"custom-{i}", "").strip()
            if not name:
                errors[f"custom-{i}"] = "Name the new custom field, or choose another target."
            choice = importing.CUSTOM_PREFIX + name
        elif choice not in allowed:
            errors[f"column-{i}"] = "Choose one of the targets offered."
        mapping[column] = choice
    return mapping, errors


@router.post("/imports/{token}")
async def start(request: Request, token: str, viewer: Editor, session: WriteSession) -> Response:
    """Start the import with the chosen mapping; the progress page follows it."""
    form = typed(await request.form())
    return await run_in_threadpool(_start, request, viewer.scope(session), token, form)


def _start(request: Request, scope: AccountScope, token: str, form: dict[str, str]) -> Response:
    staged = staging.staged_upload(scope, token)
    names = {f.name for f in custom_fields.list_field_types(scope)}
    mapping, errors = _mapping_of(staged.header, form, names)
    existing = form.get("existing", "skip")
    if existing not in EXISTING_CHOICES:
        errors["existing"] = "Choose what to do with addresses already here."
    list_id = form.get("list", "").strip() or None
    if not errors:
        options = importing.ImportOptions(
            list_id=list_id,
            existing="update" if existing == "update" else "skip",
            mapping=mapping,
        )
        try:
            job = staging.start_staged_import(scope, token, options)
        except DripstoneError as exc:
            scope.session.rollback()
            field = str(exc.details.get("field") or FORM)
            errors[{"subscription_list_id": "list"}.get(field, field)] = _message(exc)
        else:
            return RedirectResponse(f"/imports/jobs/{job.id}", status_code=303)
    return _mapping_page(request, scope, staged, form, errors, 422)


# --- progress ----------------------------------------------------------------------------------


def _import_job(scope: AccountScope, jid: str) -> Job:
    """The account's import job `jid`; another account's, or another kind of job, is a 404."""
    job = get_job(scope, jid) if is_uuid(jid) else None
    if job is None or job.kind != importing.IMPORT_JOB:
        raise NotFound("there is no such import in this account")
    return job


def _progress(job: Job) -> dict[str, Any]:
    return {
        "job": job,
        "counts": importing.import_counts(job) or {},
        "finished": job.state in FINISHED,
        "has_rejected": importing.rejected_rows_path(job) is not None
        and (importing.import_counts(job) or {}).get("rejected", 0) > 0,
    }


@router.get("/imports/jobs/{jid}")
def progress_page(request: Request, jid: str, viewer: SignedIn, session: ReadSession) -> Response:
    """The import's progress bar (refreshed while the job runs), then its counts."""
    job = _import_job(viewer.scope(session), jid)
    return render(request, "imports/progress.html", {"title": "Import", **_progress(job)})


@router.get("/imports/jobs/{jid}/progress")
def progress_fragment(
    request: Request, jid: str, viewer: SignedIn, session: ReadSession
) -> Response:
    """The progress part alone, for the page to poll; it stops asking once the job is done."""
    job = _import_job(viewer.scope(session), jid)
    return render(request, "imports/_progress.html", _progress(job))


@router.get("/imports/jobs/{jid}/rejected.csv")
def rejected_rows(jid: str, viewer: SignedIn, session: ReadSession) -> Response:
    """The rows the import rejected, each with its line and reason (the API's same file)."""
    job = _import_job(viewer.scope(session), jid)
    path = importing.rejected_rows_path(job)
    if path is None:
        raise NotFound("this import has no rejected rows to download")
    return FileResponse(path, media_type="text/csv", filename=f"rejected-{jid}.csv")


# --- export ------------------------------------------------------------------------------------


@router.get("/exports")
def exports_page(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    """Download a list, or the subscribers a search finds, as CSV."""
    context = {"title": "Export subscribers", "lists": lists.all_lists(viewer.scope(session))}
    return render(request, "imports/exports.html", context)


@router.get("/exports/subscribers.csv")
def export_subscribers(request: Request, viewer: SignedIn, session: ReadSession) -> Response:
    """The chosen subscribers as CSV, streamed: email, names, phone, status, custom fields.
    Chosen as the subscribers page chooses them: a list or a dynamic list, a search, filter
    rows."""
    scope = viewer.scope(session)
    chosen = subscribers_pages.choose(scope, request.query_params)
    if chosen.errors:
        field, message = next(iter(chosen.errors.items()))
        raise Invalid(f"{field}: {message}", field=field)
    export = exporting.plan_export(scope, subscribers_pages.selection_of(scope, chosen))
    return StreamingResponse(
        csv_rows(export.header, _streamed(export), lambda row: row),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": 'attachment; filename="subscribers.csv"'},
    )


def _streamed(export: exporting.SubscriberExport) -> Iterator[list[str | None]]:
    """The export's rows on a read session of its own: the response streams after the
    request's session has closed."""
    with db.database().read_sessions() as session:
        yield from exporting.export_rows(session, export)
