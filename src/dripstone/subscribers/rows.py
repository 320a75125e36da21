"""Writing many rows: IN (...) lists in chunks, and unique-index clashes turned into the 422
that names the field."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy.exc import IntegrityError

from dripstone.db import AccountScope

# Keep each IN (...) well under SQLite's bound-parameter limit.
IN_CHUNK = 5000


def chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@contextmanager
def unique_or_clash(scope: AccountScope, clash: Callable[[], None]) -> Iterator[None]:
    """Write the block's rows in a savepoint. When a unique index refuses them (a concurrent
    request wrote the same value after our check), `clash` re-checks and raises the 422 that
    names the field; the savepoint keeps the session usable for that."""
    try:
        with scope.session.begin_nested():
            yield
            scope.session.flush()
    except IntegrityError:
        clash()
        raise
