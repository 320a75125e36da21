"""Alembic environment: runs migrations against the configured database."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import DateTime

import dripstone.accounts.models
import dripstone.analytics.models
import dripstone.audit.models
import dripstone.delivery.models
import dripstone.drips.models
import dripstone.idempotency.models
import dripstone.jobs.models
import dripstone.mailings.models
import dripstone.subscribers.models
import dripstone.tracking.models
import dripstone.users.models  # noqa: F401
from dripstone.db import Base, UTCDateTime, create_engine

QUEUE_TABLE_PREFIX = "huey_"


def _render_item(type_: str, obj: Any, _autogen_context: AutogenContext) -> str | Literal[False]:
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime()"
    return False


def _compare_type(
    _context: Any, _inspected: Any, _metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    # UTCDateTime is DATETIME in the database (text-bound on SQLite): not a change.
    if isinstance(metadata_type, UTCDateTime) and isinstance(inspected_type, DateTime):
        return False
    return None


def _include_object(
    obj: Any, _name: str | None, type_: str, reflected: bool, _compare_to: Any
) -> bool:
    # The job queue may share the database; its tables belong to Huey, not to these models,
    # and must never appear as tables to drop.
    table = obj if type_ == "table" else getattr(obj, "table", None)
    if reflected and table is not None and str(table.name).startswith(QUEUE_TABLE_PREFIX):
        return False
    # Indexes created for one dialect only (Index.ddl_if) are not missing on the others.
    ddl_if = getattr(obj, "_ddl_if", None)
    if type_ == "index" and not reflected and ddl_if is not None and ddl_if.dialect:
        return bool(context.get_bind().dialect.name == ddl_if.dialect)
    return True


def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=engine.dialect.name == "sqlite",
            render_item=_render_item,
            compare_type=_compare_type,
            include_object=_include_object,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
