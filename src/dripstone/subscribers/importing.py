"""Importing subscribers from a CSV file, as a background job.

The whole file is checked before anything is written (UTF-8, a header with an email column,
well-formed lines, at most `MAX_IMPORT_ROWS` rows); then a job reads it in batches from a byte
offset, so memory stays flat whatever the file's size. Each row is validated by the rules of
the API; rows that fail go, with their line number and reason, to a CSV of rejected rows."""

from __future__ import annotations

import csv
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope, after_commit, insert_rows, new_uuids
from dripstone.errors import Invalid
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.subscribers import counts as list_counts
from dripstone.subscribers.custom_fields import add_custom_fields, field_type_ids
from dripstone.subscribers.lists import default_list, referenced_list
from dripstone.subscribers.membership import join, record_joins
from dripstone.subscribers.models import CustomFieldValue, Subscriber, SubscriptionList
from dripstone.subscribers.rows import chunks
from dripstone.subscribers.schemas import CustomValue, FieldName, Phone
from dripstone.wire import Email, Name, Strict

log = logging.getLogger(__name__)

IMPORT_JOB = "subscribers_import"
MAX_IMPORT_ROWS = 1_000_000
# An import row costs a small part of what most jobs' rows cost (a delivery, say).
ROWS_PER_JOB_ROW = 20
FIELDS = ("email", "first_name", "last_name", "phone_number")
CUSTOM_PREFIX = "custom."
# Spreadsheets run a cell starting with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Existing = Literal["skip", "update"]

_imports_dir: Path | None = None


def configure_imports(data_dir: Path) -> None:
    """Keep uploaded files and rejected rows under `data_dir`/imports."""
    global _imports_dir
    _imports_dir = data_dir / "imports"


def imports_dir() -> Path:
    if _imports_dir is None:
        raise RuntimeError("imports are not configured: call configure_imports first")
    _imports_dir.mkdir(parents=True, exist_ok=True)
    return _imports_dir


@dataclass(frozen=True)
class ImportOptions:
    list_id: str | None = None
    existing: Existing = "skip"
    # CSV header → email, first_name, last_name, phone_number, custom.<name>, or "" to ignore.
    mapping: dict[str, str] | None = None


@dataclass(frozen=True)
class _Scan:
    header: list[str]
    rows: int
    body_offset: int


class _Good(NamedTuple):
    """A row that passed the API's rules, as plain values: batches read ahead cross processes."""

    line: int
    email: str
    phone_number: str | None
    first_name: str | None
    last_name: str | None
    custom: dict[str, str]
    cells: list[str]


def _refuse(message: str, field: str = "file") -> Invalid:
    return Invalid(f"{field}: {message}", field=field)


def _lines(handle: IO[bytes], offset: int, position: list[int]) -> Iterator[str]:
    """The file's lines from `offset`, decoded; `position[0]` follows the bytes read."""
    handle.seek(offset)
    position[0] = offset
    for raw in handle:
        position[0] += len(raw)
        yield raw.decode("utf-8")


def _reader(lines: Iterator[str]) -> Any:
    return csv.reader(lines, strict=True)


def _scan(path: Path) -> _Scan:
    """Check the whole file; raises the 422 that says what is wrong with it."""
    position = [0]
    with path.open("rb") as handle:
        start = 3 if handle.read(3) == b"\xef\xbb\xbf" else 0
        reader = _reader(_lines(handle, start, position))
        try:
            header = next(reader, None)
            if header is None:
                raise _refuse("the file is empty: expected a header line naming the columns")
            body_offset = position[0]
            rows = 0
            for cells in reader:
                if not cells:
                    continue
                rows += 1
                if rows > MAX_IMPORT_ROWS:
                    raise _refuse(f"more than {MAX_IMPORT_ROWS:,} rows; split the file")
                if len(cells) != len(header):
                    raise _refuse(
                        f"line {reader.line_num} is malformed: {len(cells)} cells where the "
                        f"header has {len(header)}"
                    )
        except UnicodeDecodeError:
            raise _refuse(
                f"not UTF-8 text (an invalid byte after byte {position[0]:,}); "
                "save the file as UTF-8 CSV"
            ) from None
        except csv.Error as exc:
            raise _refuse(f"line {reader.line_num} is malformed: {exc}") from None
    return _Scan(header=header, rows=rows, body_offset=body_offset)


def scan_file(path: Path) -> tuple[list[str], int]:
    """The header and the number of rows of a CSV file, once the whole of it has been checked;
    raises the 422 (field `file`) that says what is wrong with it."""
    scan = _scan(path)
    return scan.header, scan.rows


_field_name = TypeAdapter(FieldName)


def _check_field_name(column: str, name: str) -> None:
    """A custom field name every row could be stored under, or the refusal naming the column."""
    try:
        _field_name.validate_python(name)
    except ValidationError:
        raise _refuse(
            f"column {column!r}: a custom field's name has 1 to 255 characters, none of them NUL",
            "mapping",
        ) from None


def _columns(header: Sequence[str], mapping: dict[str, str] | None) -> list[str]:
    """What each column of the file feeds: a field, `custom.<name>`, or "" (ignored)."""
    if mapping is None:
        columns = []
        for name in header:
            key = name.strip()
            columns.append(key.lower() if key.lower() in FIELDS else key and CUSTOM_PREFIX + key)
    else:
        unknown = [name for name in mapping if name not in header]
        if unknown:
            raise _refuse(f"the file has no column {unknown[0]!r}", "mapping")
        columns = []
        for name in header:
            target = mapping.get(name, "").strip()
            custom = target.removeprefix(CUSTOM_PREFIX).strip()
            if (
                target
                and target not in FIELDS
                and not (target.startswith(CUSTOM_PREFIX) and custom)
            ):
                raise _refuse(
                    f"column {name!r} maps to {target!r}: expected one of {', '.join(FIELDS)} "
                    "or custom.<name>",
                    "mapping",
                )
            if target.startswith(CUSTOM_PREFIX):
                _check_field_name(name, custom)
            columns.append(CUSTOM_PREFIX + custom if target.startswith(CUSTOM_PREFIX) else target)
    targets = [c for c in columns if c]
    doubled = sorted({c for c in targets if targets.count(c) > 1})
    if doubled:
        raise _refuse(
            f"more than one column feeds {doubled[0]!r}", "mapping" if mapping else "file"
        )
    if "email" not in columns:
        raise _refuse(
            "no email column: name a column 'email' or map one to it",
            "mapping" if mapping else "file",
        )
    return columns


def start_import(scope: AccountScope, path: Path, options: ImportOptions, *, owned: bool) -> Job:
    """Check the file and queue its import. With `owned`, the file is Dripstone's copy (an
    upload) and is removed once imported."""
    target = (
        referenced_list(scope, options.list_id, "subscription_list_id") if options.list_id else None
    )
    scan = _scan(path)
    columns = _columns(scan.header, options.mapping)
    first_new_id = scope.session.scalar(
        select(func.coalesce(func.max(Subscriber.id), 0)).where(
            Subscriber.account_id == scope.account_id
        )
    )
    job = create_job(scope.session, scope.account_id, IMPORT_JOB, {}, total=scan.rows)
    rejected = imports_dir() / f"{job.id}-rejected.csv"
    with rejected.open("w", encoding="utf-8", newline="") as out:
        csv.writer(out).writerow(["line", "reason", *scan.header])
    job.cursor = scan.body_offset
    job.payload = {
        "path": str(path.resolve()),
        "owned": owned,
        "columns": columns,
        "list_id": target.id if target is not None and not target.is_default else None,
        "existing": options.existing,
        "first_new_id": int(first_new_id or 0),
        "line": 1,
        "rejected_path": str(rejected),
        "rejected_bytes": rejected.stat().st_size,
        "counts": {"added": 0, "updated": 0, "skipped": 0, "rejected": 0},
    }
    return job


def keep_upload(source: IO[bytes]) -> Path:
    """Copy an uploaded file into the imports directory; returns its path there."""
    path = imports_dir() / f"upload-{uuid.uuid4()}.csv"
    with path.open("wb") as out:
        shutil.copyfileobj(source, out, 1024 * 1024)
    return path


def rejected_rows_path(job: Job) -> Path | None:
    """The CSV of the rows an import job rejected, once the job has started."""
    if job.kind != IMPORT_JOB or "rejected_path" not in job.payload:
        return None
    path = Path(job.payload["rejected_path"])
    return path if path.exists() else None


def import_counts(job: Job) -> dict[str, int] | None:
    counts = job.payload.get("counts") if job.kind == IMPORT_JOB else None
    return dict(counts) if counts is not None else None


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as text rather than running as a formula."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


class _Row(Strict):
    email: Email
    phone_number: Phone | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    custom: dict[FieldName, CustomValue] = {}


_validate_row = TypeAdapter(_Row).validate_python


def _reason(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "row"
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if first["type"] != "missing" else f"{where}: required"


@dataclass
class _Batch:
    good: list[_Good]
    rejected: list[tuple[int, str, list[str]]]
    cursor: int
    next_line: int
    finished: bool


def _read_batch(path: Path, offset: int, line: int, columns: Sequence[str], size: int) -> _Batch:
    position = [offset]
    good: list[_Good] = []
    rejected: list[tuple[int, str, list[str]]] = []
    seen: dict[str, int] = {}
    finished = True
    # Where each field's and each custom field's cell is, worked out once for the batch.
    fields = [(i, t) for i, t in enumerate(columns) if t and not t.startswith(CUSTOM_PREFIX)]
    customs = [
        (i, t.removeprefix(CUSTOM_PREFIX))
        for i, t in enumerate(columns)
        if t.startswith(CUSTOM_PREFIX)
    ]
    taken = 0
    with path.open("rb") as handle:
        reader = _reader(_lines(handle, offset, position))
        consumed = 0
        for cells in reader:
            row_line = line + consumed + 1
            consumed = reader.line_num
            if not cells:
                continue
            if len(cells) != len(columns):  # the file changed since it was checked
                raise ValueError(f"line {row_line} has {len(cells)} cells, not {len(columns)}")
            values: dict[str, Any] = {t: cells[i] for i, t in fields if cells[i].strip()}
            custom = {name: cells[i] for i, name in customs if cells[i].strip()}
            if custom:
                values["custom"] = custom
            try:
                row = _validate_row(values)
            except ValidationError as exc:
                rejected.append((row_line, _reason(exc), cells))
            else:
                earlier = seen.get(row.email)
                if earlier is not None:
                    rejected.append((row_line, f"email: also on line {earlier}", cells))
                else:
                    seen[row.email] = row_line
                    good.append(
                        _Good(
                            row_line,
                            row.email,
                            row.phone_number,
                            row.first_name,
                            row.last_name,
                            row.custom,
                            cells,
                        )
                    )
            taken += 1
            if taken >= size:
                finished = False
                break
    return _Batch(good, rejected, position[0], line + consumed, finished)


def _upsert_custom(session: Session) -> Any:
    if session.get_bind().dialect.name == "postgresql":
        stmt: Any = pg_insert(CustomFieldValue)
    else:
        stmt = sqlite_insert(CustomFieldValue)
    return stmt.on_conflict_do_update(
        index_elements=["subscriber_id", "field_type_id"], set_={"value": stmt.excluded.value}
    )


def _write_rejected(payload: dict[str, Any], rows: Sequence[tuple[int, str, list[str]]]) -> int:
    """Append rejected rows to the job's file (after cutting off what a failed attempt at
    this batch left there); returns the file's new size."""
    path = Path(payload["rejected_path"])
    with path.open("r+", encoding="utf-8", newline="") as out:
        out.truncate(payload["rejected_bytes"])
        out.seek(0, os.SEEK_END)
        writer = csv.writer(out)
        writer.writerows(
            [str(line), neutralise(reason), *(neutralise(cell) for cell in cells)]
            for line, reason, cells in rows
        )
    return path.stat().st_size


class _Where(NamedTuple):
    """Where a batch is in the file, and what is read from there: all a batch depends on."""

    path: str
    offset: int
    line: int
    columns: tuple[str, ...]
    size: int


def _read_at(where: _Where) -> _Batch:
    return _read_batch(Path(where.path), where.offset, where.line, where.columns, where.size)


# Reading and checking a batch costs about as much as writing it; on a machine with a core to
# spare, a reader process reads the next batch while this one is written.
_reader_process: ProcessPoolExecutor | None = None
_ahead: dict[str, tuple[_Where, Future[_Batch]]] = {}
_ahead_lock = threading.Lock()
# Imports running at once in this process that can each have a batch read ahead.
_AHEAD_JOBS = 4


def _start_reader() -> None:
    """In the reader process: Ctrl-C stops the server, which stops the reader, so the reader
    itself need not say so; and the reader ends with the process that started it, however
    that ends (a server stopped by a signal, or killed, runs no exit handlers to stop it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_end_with, args=(parent,), daemon=True).start()


def _end_with(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(0)


def _reading_process() -> ProcessPoolExecutor | None:
    global _reader_process
    if len(os.sched_getaffinity(0)) < 2:
        return None
    with _ahead_lock:
        if _reader_process is None:
            _reader_process = ProcessPoolExecutor(
                max_workers=1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_reader,
            )
        return _reader_process


def _read_ahead(job_id: str, where: _Where) -> None:
    global _reader_process
    reader = _reading_process()
    if reader is None:
        return
    try:
        future = reader.submit(_read_at, where)
    except BrokenProcessPool:  # the reader died: start another for the next batch
        with _ahead_lock:
            _reader_process = None
        return
    with _ahead_lock:
        _ahead[job_id] = (where, future)
        while len(_ahead) > _AHEAD_JOBS:
            _ahead.pop(next(iter(_ahead)))[1].cancel()


def _read(job_id: str, where: _Where) -> _Batch:
    """The batch at `where`: as read ahead when it was (for this very place), else read here,
    where whatever is wrong with the file fails the job as it always did."""
    global _reader_process
    with _ahead_lock:
        waiting = _ahead.pop(job_id, None)
    if waiting is not None:
        asked, future = waiting
        if asked == where:
            try:
                return future.result()
            except Exception as exc:  # read again here, where an error is the job's
                log.warning("import %s: reading ahead failed (%r); reading here", job_id, exc)
                if isinstance(exc, BrokenProcessPool):
                    with _ahead_lock:
                        _reader_process = None
        future.cancel()
    return _read_at(where)


@job_step(IMPORT_JOB)
def _import_batch(session: Session, job: Job, batch_size: int) -> StepResult:
    scope = AccountScope(session, job.account_id)
    payload = dict(job.payload)
    where = _Where(
        payload["path"],
        job.cursor,
        payload["line"],
        tuple(payload["columns"]),
        batch_size * ROWS_PER_JOB_ROW,
    )
    batch = _read(job.id, where)
    if not batch.finished:
        _read_ahead(job.id, where._replace(offset=batch.cursor, line=batch.next_line))
    by_email = {row.email: row for row in batch.good}
    existing: dict[str, int] = {}
    for chunk in chunks(list(by_email)):
        found = session.execute(
            scope.select(Subscriber, Subscriber.email, Subscriber.id).where(
                Subscriber.email.in_(chunk)
            )
        )
        existing.update(found.all())
    rejected = list(batch.rejected)
    # Subscribers this import added in an earlier batch: the address is on an earlier line.
    for email in [e for e, sid in existing.items() if sid > payload["first_new_id"]]:
        row = by_email.pop(email)
        rejected.append((row.line, "email: also on an earlier line", row.cells))
        del existing[email]
    now = clock.now()
    emails = [email for email in by_email if email not in existing]
    fresh = [
        (public_id, email, row.phone_number, row.first_name, row.last_name)
        for public_id, email in zip(new_uuids(len(emails)), emails, strict=True)
        for row in (by_email[email],)
    ]
    added: dict[str, int] = dict(
        insert_rows(
            session,
            Subscriber,
            ("uuid", "email", "phone_number", "first_name", "last_name"),
            fresh,
            same={"account_id": scope.account_id, "created_at": now, "updated_at": now},
            skip_clashes_on=("account_id", "email"),
            returning=("email", "id"),
        )
    )
    add_custom_fields(scope, {sid: by_email[email].custom for email, sid in added.items()})
    updating = payload["existing"] == "update"
    if updating and existing:
        _update_existing(scope, {sid: by_email[email] for email, sid in existing.items()}, now)
    list_counts.added(session, scope.account_id, list(added.values()))
    record_joins(scope, default_list(scope).id, list(added.values()))
    if payload["list_id"] is not None:
        target = session.get(SubscriptionList, payload["list_id"])
        if target is not None:
            join(scope, target, list(added.values()), created=True)
            join(scope, target, list(existing.values()))
    rejected.sort()
    if rejected:
        payload["rejected_bytes"] = _write_rejected(payload, rejected)
    counts = dict(payload["counts"])
    counts["added"] += len(added)
    counts["updated" if updating else "skipped"] += len(existing)
    counts["rejected"] += len(rejected)
    payload["counts"] = counts
    payload["line"] = batch.next_line
    if batch.finished and payload["owned"]:
        upload = Path(payload["path"])
        after_commit(session, lambda: upload.unlink(missing_ok=True))
    job.payload = payload
    return StepResult(
        done=len(added) + len(existing),
        failed=len(rejected),
        cursor=batch.cursor,
        finished=batch.finished,
    )


def _update_existing(scope: AccountScope, rows: dict[int, _Good], now: Any) -> None:
    """Set the given fields of existing subscribers; cells left empty keep what they hold."""
    params = [
        {
            "sid": sid,
            "p_phone": row.phone_number,
            "p_first": row.first_name,
            "p_last": row.last_name,
        }
        for sid, row in rows.items()
    ]
    stmt = (
        update(Subscriber)
        .where(Subscriber.id == bindparam("sid"))
        .values(
            phone_number=func.coalesce(bindparam("p_phone"), Subscriber.phone_number),
            first_name=func.coalesce(bindparam("p_first"), Subscriber.first_name),
            last_name=func.coalesce(bindparam("p_last"), Subscriber.last_name),
            updated_at=now,
        )
    )
    scope.session.connection().execute(stmt, params)
    custom = {sid: row.custom for sid, row in rows.items() if row.custom}
    if custom:
        type_ids = field_type_ids(scope, {name for fields in custom.values() for name in fields})
        scope.session.connection().execute(
            _upsert_custom(scope.session),
            [
                {"subscriber_id": sid, "field_type_id": type_ids[name], "value": value}
                for sid, fields in custom.items()
                for name, value in fields.items()
            ],
        )
