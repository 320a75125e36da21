"""Rows written out as they come: a JSON `{"data": [...]}` envelope, or CSV.

CSV cells are neutralised against formula injection: a spreadsheet runs a cell that starts
with `=`, `+`, `-` or `@` (or a tab or carriage return before one), so such a cell gets a
leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_CHUNK = 500


def json_envelope(rows: Iterable[Any]) -> Iterator[bytes]:
    """`{"data": [row, ...]}`, a chunk of rows at a time."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    yield b'{"data":['
    chunk: list[str] = []
    first = True
    for row in rows:
        chunk.append(encode(row))
        if len(chunk) == ROWS_PER_CHUNK:
            yield (("" if first else ",") + ",".join(chunk)).encode()
            first, chunk = False, []
    if chunk:
        yield (("" if first else ",") + ",".join(chunk)).encode()
    yield b"]}"


def safe_cell(value: Any) -> str:
    """A value as CSV text that no spreadsheet evaluates."""
    if value is None:
        return ""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_rows(
    header: Sequence[str], rows: Iterable[Any], cells: Callable[[Any], Sequence[Any]]
) -> Iterator[bytes]:
    """A header line, then `cells(row)` for each row, a chunk of rows at a time."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([safe_cell(name) for name in header])
    for count, row in enumerate(rows, start=1):
        writer.writerow([safe_cell(cell) for cell in cells(row)])
        if count % ROWS_PER_CHUNK == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()
