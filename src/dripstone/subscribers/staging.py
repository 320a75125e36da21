"""Uploads waiting for their columns to be mapped: a CSV file received and checked whole,
kept under its account's name until an import starts from it, or for a day.

The file is checked when it arrives (UTF-8, well-formed lines, not too many rows), so what no
mapping can fix is refused at once; what the mapping decides (which column is the email) is
checked when the import starts, by the import itself."""

from __future__ import annotations

import csv
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO

from dripstone.db import AccountScope, after_commit
from dripstone.errors import Invalid, NotFound
from dripstone.jobs.models import Job
from dripstone.subscribers import importing
from dripstone.wire import is_uuid

KEPT_FOR = timedelta(days=1)
GONE = "this upload is not waiting for an import any more; upload it again"
SAMPLE_ROWS = 5
# How a header is compared with the fields' names: case, spaces, dashes and dots aside.
_NOISE = re.compile(r"[\s_.\-]+")
_FIELD_NAMES = {
    "email": "email",
    "emailaddress": "email",
    "mail": "email",
    "firstname": "first_name",
    "givenname": "first_name",
    "forename": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "phonenumber": "phone_number",
    "phone": "phone_number",
    "mobile": "phone_number",
    "mobilephone": "phone_number",
}


@dataclass(frozen=True)
class StagedUpload:
    """A checked CSV file: its header, its number of rows and its first rows."""

    token: str
    header: list[str]
    rows: int
    sample: list[list[str]]


def _path(scope: AccountScope, token: str, suffix: str) -> Path:
    return importing.imports_dir() / f"staged-{scope.account_id}-{token}{suffix}"


def _sweep() -> None:
    """Forget uploads nobody started an import from within `KEPT_FOR` (and those whose start
    was claimed but never committed)."""
    oldest = time.time() - KEPT_FOR.total_seconds()
    for summary in importing.imports_dir().glob("staged-*"):
        if summary.suffix not in (".json", ".claimed"):
            continue
        try:
            if summary.stat().st_mtime < oldest:
                summary.with_suffix(".csv").unlink(missing_ok=True)
                summary.unlink(missing_ok=True)
        except FileNotFoundError:  # another request swept it first
            continue


def _sample(path: Path, count: int) -> list[list[str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, strict=True)
        next(reader, None)
        sample: list[list[str]] = []
        for cells in reader:
            if cells:
                sample.append(cells)
            if len(sample) == count:
                break
    return sample


def stage_upload(scope: AccountScope, source: IO[bytes]) -> StagedUpload:
    """Keep an uploaded CSV file for the account and check it whole. A file no mapping can
    make importable is refused (422, field `file`) and not kept."""
    _sweep()
    token = str(uuid.uuid4())
    path = _path(scope, token, ".csv")
    try:
        with path.open("wb") as out:
            while chunk := source.read(1024 * 1024):
                out.write(chunk)
        header, rows = importing.scan_file(path)
        staged = StagedUpload(token, header, rows, _sample(path, SAMPLE_ROWS))
    except Invalid:
        path.unlink(missing_ok=True)
        raise
    _path(scope, token, ".json").write_text(json.dumps(asdict(staged)), encoding="utf-8")
    return staged


def staged_upload(scope: AccountScope, token: str) -> StagedUpload:
    """The account's upload `token` (404 if it is another account's, started or forgotten)."""
    summary = _path(scope, token, ".json") if is_uuid(token) else None
    if summary is None or not summary.exists():
        raise NotFound(GONE, field="upload")
    return StagedUpload(**json.loads(summary.read_text(encoding="utf-8")))


def start_staged_import(scope: AccountScope, token: str, options: importing.ImportOptions) -> Job:
    """Start importing the account's upload `token` (the same job as the API's import). The
    upload is claimed first, so two clicks on Start import it once; a refused start leaves it
    waiting for a better mapping."""
    summary = _path(scope, token, ".json") if is_uuid(token) else None
    claimed = _path(scope, token, ".claimed")
    try:
        if summary is None:
            raise FileNotFoundError(token)
        summary.rename(claimed)
    except FileNotFoundError:
        raise NotFound(GONE, field="upload") from None
    try:
        job = importing.start_import(scope, _path(scope, token, ".csv"), options, owned=True)
    except BaseException:
        claimed.rename(summary)
        raise
    after_commit(scope.session, lambda: claimed.unlink(missing_ok=True))
    return job


def suggested_mapping(header: Sequence[str], custom_fields: Sequence[str]) -> list[str]:
    """For each column, what it most likely feeds: a field, `custom.<name>` (an existing
    custom field of that name, or a new one named like the column), or "" when its header
    is empty."""
    custom_by_key = {_NOISE.sub("", name).lower(): name for name in custom_fields}
    taken: set[str] = set()
    suggested = []
    for name in header:
        key = _NOISE.sub("", name).lower()
        target = _FIELD_NAMES.get(key, "")
        if not target and name.strip():
            target = importing.CUSTOM_PREFIX + custom_by_key.get(key, name.strip())
        if target in taken:
            target = ""  # a second column of the same meaning: left for the user to choose
        taken.add(target)
        suggested.append(target)
    return suggested
