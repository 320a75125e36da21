"""Database engine, sessions, the declarative base and the account-scoping helper."""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, TypeVar

import re2
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Select,
    String,
    any_,
    event,
    func,
    literal,
    select,
    text,
)
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator, TypeEngine

from dripstone import clock
from dripstone.errors import BadRequest
from dripstone.wire import is_uuid

READ_ONLY = "dripstone_read_only"
AFTER_COMMIT = "dripstone_after_commit"

# SQLite has no 64-bit serial type distinct from INTEGER PRIMARY KEY.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


_last_bound: tuple[datetime | None, str, Any] = (None, "", None)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC without a zone (portable), always returns an aware UTC datetime.

    On SQLite the value is written as text in the format SQLAlchemy's DATETIME uses
    ("2026-01-05 09:00:00.000000", fixed width, so text order is time order), but through
    `isoformat`/`fromisoformat`: bulk inserts bind several timestamps a row, and the generic
    path cost about a fifth of their database time."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use dripstone.clock.now()")
        global _last_bound
        last = _last_bound
        if last[0] is value and last[1] == dialect.name:
            return last[2]  # a bulk insert binds the same "now" on every row
        utc = value if value.tzinfo is UTC else value.astimezone(UTC)
        naive = utc.replace(tzinfo=None)
        bound = naive.isoformat(" ", "microseconds") if dialect.name == "sqlite" else naive
        _last_bound = (value, dialect.name, bound)
        return bound

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


def new_uuid() -> str:
    return new_uuids(1)[0]


def new_uuids(count: int) -> list[str]:
    """`count` UUIDs of version 7 (RFC 9562): the time in milliseconds, then 74 random bits.
    Ordered by time, the ids of rows written together fall in one corner of the index on
    them, not on a page each: a large import touches a few pages where it touched thousands.
    Made together because a bulk write needs one a row, and `uuid` makes them one at a time."""
    raw = bytearray(os.urandom(16 * count))
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    for position, byte in enumerate(stamp):
        raw[position::16] = bytes((byte,)) * count
    raw[6::16] = bytes(b & 0x0F | 0x70 for b in raw[6::16])
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-"
        f"{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


class Base(DeclarativeBase):
    # Named constraints, so later migrations (SQLite batch mode included) can refer to them.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {datetime: UTCDateTime()}


class AccountOwned:
    """Mixin for every row that belongs to one account."""

    account_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )


class Timestamps:
    created_at: Mapped[datetime] = mapped_column(default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(default=clock.now, onupdate=clock.now)


class PublicId:
    """The id clients see: a UUID string, distinct from the internal integer key."""

    uuid: Mapped[str] = mapped_column(String(36), default=new_uuid, unique=True)


M = TypeVar("M")


RowLock = Literal["share", "change"]


def owned_by(dialect: Dialect, model: Any, account_id: int) -> ColumnElement[bool]:
    """`model.account_id = account_id` as a guard, for a statement that a list of ids or an
    id range leads. With no statistics SQLite takes an equality on the account's indexes for
    the most selective term and reads every row of the account (a quarter of a second a
    statement at a million subscribers); `likely` tells it what is so: the condition holds
    for nearly every row there."""
    condition: ColumnElement[bool] = model.account_id == account_id
    return func.likely(condition) if dialect.name == "sqlite" else condition


def among(dialect: Dialect, column: Any, ids: Sequence[int]) -> ColumnElement[bool]:
    """`column IN ids` with the ids bound as one value (a JSON array on SQLite, an array on
    PostgreSQL): any number of them, and nothing compiled per id.

    Beside it, the account's condition goes as `owned_by`, not as a plain `account_id = ?`,
    which SQLite with no statistics would take as the way in."""
    clause: ColumnElement[bool]
    if dialect.name == "postgresql":
        clause = column == any_(literal(list(ids), ARRAY(BigInteger())))
    else:
        each = func.json_each(literal(json.dumps(list(ids)))).table_valued("value")
        clause = column.in_(select(each.c.value))
    return clause


def locked(stmt: Select[Any], lock: RowLock | None) -> Select[Any]:
    """`stmt` taking row locks until the transaction ends, on PostgreSQL: "share" lets other
    sharers in and keeps changers out (FOR SHARE); "change" keeps sharers out but not foreign
    keys pointing at the row (FOR NO KEY UPDATE). SQLite has one writer, so no locks."""
    if lock is None:
        return stmt
    stmt = stmt.execution_options(populate_existing=True)
    if lock == "share":
        return stmt.with_for_update(read=True)
    return stmt.with_for_update(key_share=True)


class AccountScope:
    """Every query of account-owned rows goes through here, so no query can miss the account."""

    def __init__(self, session: Session, account_id: int) -> None:
        self.session = session
        self.account_id = account_id

    def select(self, model: type[M], *columns: Any) -> Select[Any]:
        stmt = select(*(columns or (model,)))
        return stmt.where(model.account_id == self.account_id)  # type: ignore[attr-defined]

    def owns(self, model: type[Any]) -> ColumnElement[bool]:
        """The account's condition, for a statement that other terms lead: see `owned_by`."""
        return owned_by(self.session.get_bind().dialect, model, self.account_id)

    def by_uuid(self, model: type[M], public_id: str, lock: RowLock | None = None) -> M | None:
        """The row with this public id. Text that is not a UUID names nothing and is not
        looked up (ids in paths are free text; PostgreSQL refuses text holding NUL)."""
        if not is_uuid(public_id):
            return None
        stmt = self.select(model).where(model.uuid == public_id.lower())  # type: ignore[attr-defined]
        return self.session.scalars(locked(stmt, lock)).one_or_none()

    def by_id(self, model: type[M], internal_id: int, lock: RowLock | None = None) -> M | None:
        stmt = self.select(model).where(model.id == internal_id)  # type: ignore[attr-defined]
        return self.session.scalars(locked(stmt, lock)).one_or_none()


def create_engine(url: str) -> Engine:
    """An engine with the pragmas and transaction mode each backend needs."""
    if url.startswith("sqlite"):
        engine = sa_create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return sa_create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _sqlite_on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        "foreign_keys=ON",
        "busy_timeout=30000",
        "cache_size=-16384",  # 16 MiB of pages per connection: memory stays bounded
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()
    # SQLite's own lower() folds ASCII only; searches and filters must ignore case for every
    # letter, as they do on PostgreSQL.
    dbapi_connection.create_function(
        "lower", 1, lambda v: v.lower() if isinstance(v, str) else v, deterministic=True
    )
    # SQLAlchemy's REGEXP is Python's `re`, whose backtracking a pattern can make take hours
    # while holding the GIL, freezing the whole process.
    dbapi_connection.create_function("regexp", 2, _regexp, deterministic=True)


def _sqlite_on_begin(connection: Any) -> None:
    # A deferred transaction that later writes can fail at once with "database is locked";
    # taking the write lock at BEGIN makes writers queue on busy_timeout instead.
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class Database:
    """The engine and session factories of one configured database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        # For reads outside a session: on SQLite it begins without taking the write lock.
        self.reader = self.engine.execution_options(**{READ_ONLY: True})
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.reader, expire_on_commit=False)

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed on success and rolled back on error."""
        with self.sessions() as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction commits; drop it on rollback."""
    session.info.setdefault(AFTER_COMMIT, []).append(callback)


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.pop(AFTER_COMMIT, [])
    for callback in callbacks:
        callback()


@event.listens_for(Session, "after_rollback")
def _drop_after_commit(session: Session) -> None:
    session.info.pop(AFTER_COMMIT, None)


_database: Database | None = None


def configure(url: str) -> Database:
    """Make `url` the process's database; returns it."""
    global _database
    if _database is not None and _database.url != url:
        _database.dispose()
    if _database is None or _database.url != url:
        _database = Database(url)
    return _database


def database() -> Database:
    """The process's configured database."""
    if _database is None:
        raise RuntimeError("dripstone.db.configure() has not been called")
    return _database


INVALID_REGULAR_EXPRESSION = "2201B"  # PostgreSQL's SQLSTATE for a pattern it refuses
QUERY_CANCELED = "57014"  # PostgreSQL's SQLSTATE when statement_timeout ran out
SEARCH_TIMEOUT_MS = 2000
"""PostgreSQL's own regex engine gets this long per search; a list query of one account
takes milliseconds, so only a pathological pattern can reach it."""


class SearchError(BadRequest):
    """A regex search that cannot run: the pattern, or the time it would take (400, naming
    the `search` parameter that both list endpoints take)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"search: {reason}", field="search")


def _regex_options() -> re2.Options:
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # a user's typo is not a server log line
    return options


_REGEX_OPTIONS = _regex_options()


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> Any:
    return re2.compile(pattern, _REGEX_OPTIONS)


def _regexp(pattern: str | None, value: str | None) -> bool | None:
    """SQLite's REGEXP: RE2, whose matching takes linear time, ignoring case."""
    if pattern is None or value is None:
        return None
    return _compiled(pattern).search(value) is not None


def matches_regex(session: Session, column: Any, pattern: str) -> Any:
    """SQL: `column` matches `pattern`, ignoring case, on either backend.

    Patterns are RE2's (no backreferences or lookaround), checked here on both backends: no
    pattern can take longer than linear time on SQLite, where REGEXP runs in this process.
    PostgreSQL runs them in its own engine, bounded by `searched`. Raises SearchError.
    """
    try:
        _compiled(pattern)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise SearchError(f"not a valid regular expression ({reason})") from None
    if session.get_bind().dialect.name == "sqlite":
        return column.regexp_match(pattern)
    return column.regexp_match(pattern, flags="i")


def ordering(column: Any, tie_break: Any, order: Literal["asc", "desc"]) -> tuple[Any, Any]:
    """ORDER BY `column`, then `tie_break` (the row id) the same way: rows that share a value
    keep one order from page to page."""
    if order == "asc":
        return column.asc(), tie_break.asc()
    return column.desc(), tie_break.desc()


def searched(session: Session, stmt: Select[Any]) -> list[Any]:
    """The rows of `stmt`, a query with a `matches_regex` filter; raises SearchError."""
    postgres = session.get_bind().dialect.name == "postgresql"
    try:
        with session.begin_nested():
            if not postgres:
                return list(session.scalars(stmt))
            before = session.execute(
                text(
                    "SELECT current_setting('statement_timeout'), "
                    "set_config('statement_timeout', :ms, true)"
                ),
                {"ms": str(SEARCH_TIMEOUT_MS)},
            ).scalar_one()
            rows = list(session.scalars(stmt))
            session.execute(
                text("SELECT set_config('statement_timeout', :before, true)"), {"before": before}
            )
            return rows
    except DBAPIError as exc:
        state = getattr(exc.orig, "sqlstate", None)
        if state == INVALID_REGULAR_EXPRESSION:  # PostgreSQL's dialect refused it
            raise SearchError("not a valid regular expression") from None
        if state == QUERY_CANCELED:
            raise SearchError(
                f"the regular expression takes longer than {SEARCH_TIMEOUT_MS} ms to match"
            ) from None
        raise


def insert_ignoring_duplicates(session: Session, model: type[Any], *unique_columns: str) -> Any:
    """An INSERT that skips rows clashing on `unique_columns` (SQLite and PostgreSQL)."""
    if session.get_bind().dialect.name == "postgresql":
        return pg_insert(model).on_conflict_do_nothing(index_elements=list(unique_columns))
    return sqlite_insert(model).on_conflict_do_nothing(index_elements=list(unique_columns))


# Rows per INSERT of many VALUES on SQLite: well under its bound-parameter limit (32,766).
_ROWS_PER_INSERT = 500


def insert_rows(
    session: Session,
    model: type[Any],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    same: dict[str, Any] | None = None,
    skip_clashes_on: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> list[Any]:
    """INSERT many rows in few statements, without SQLAlchemy's per-row parameter processing:
    an import writes hundreds of thousands. `rows` hold `columns`' values as the driver takes
    them (text, integers, None); `same` holds the values every row has (bound once, through
    their column's type). A row clashing on the unique index `skip_clashes_on` is skipped.
    Returns the `returning` columns of the rows inserted."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    table = model.__table__
    # Only the model's own table and column names go into the SQL, quoted; values are bound.
    quote = dialect.identifier_preparer.quote
    constants = same or {}
    bound = []
    for name, value in constants.items():
        processor = table.c[name].type.bind_processor(dialect)
        bound.append(processor(value) if processor is not None else value)
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    names = ", ".join(quote(name) for name in (*constants, *columns))
    head = f"INSERT INTO {dialect.identifier_preparer.format_table(table)} ({names}) "
    tail = ""
    if skip_clashes_on:
        tail += f" ON CONFLICT ({', '.join(quote(n) for n in skip_clashes_on)}) DO NOTHING"
    if returning:
        tail += f" RETURNING {', '.join(quote(n) for n in returning)}"
    found: list[Any] = []
    if dialect.name == "postgresql":
        # One statement whatever the number of rows: each column travels as one array.
        arrays = ", ".join(f"{mark}::{table.c[name].type.compile(dialect)}[]" for name in columns)
        select_list = ", ".join([mark] * len(constants) + ["*"])
        sql = f"{head}SELECT {select_list} FROM unnest({arrays}){tail}"  # noqa: S608
        params = (*bound, *(list(column) for column in zip(*rows, strict=True)))
        result = connection.exec_driver_sql(sql, params)
        return list(result.all()) if returning else []
    if not returning:
        marks = ", ".join([mark] * (len(constants) + len(columns)))
        connection.exec_driver_sql(
            f"{head}VALUES ({marks}){tail}", [(*bound, *row) for row in rows]
        )
        return []
    # The values every row has are bound once, in the SELECT; "WHERE true" tells SQLite's
    # parser that ON CONFLICT belongs to the INSERT.
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    select_list = ", ".join([mark] * len(constants) + ["*"])
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        values = ", ".join([one] * len(chunk))
        sql = f"{head}SELECT {select_list} FROM (VALUES {values}) WHERE true{tail}"  # noqa: S608
        params = (*bound, *itertools.chain.from_iterable(chunk))
        found.extend(connection.exec_driver_sql(sql, params).all())
    return found
