"""Subscribers written out: the columns of an export and its rows, read a batch at a time in
id order, so any number of subscribers streams in constant memory.

The rows are plain values; whoever writes them (CSV) neutralises what a spreadsheet would run."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from dripstone.db import AccountScope
from dripstone.subscribers.models import CustomFieldType, CustomFieldValue, Subscriber
from dripstone.subscribers.selection import Selection, selected_ids_after

COLUMNS = ("email", "first_name", "last_name", "phone_number", "status")
BATCH = 1000
SUBSCRIBED = "subscribed"
OPTED_OUT = "unsubscribed"  # opted out of all marketing mail


@dataclass(frozen=True)
class SubscriberExport:
    """What an export holds: whose subscribers, which of them, and which custom fields."""

    account_id: int
    selection: Selection
    custom_fields: tuple[tuple[int, str], ...]  # (field type id, name), by name

    @property
    def header(self) -> list[str]:
        return [*COLUMNS, *(name for _id, name in self.custom_fields)]


def plan_export(scope: AccountScope, selection: Selection) -> SubscriberExport:
    """The export of the selected subscribers, with every custom field the account has."""
    fields = scope.session.execute(
        scope.select(CustomFieldType, CustomFieldType.id, CustomFieldType.name).order_by(
            CustomFieldType.name
        )
    ).all()
    return SubscriberExport(
        account_id=scope.account_id,
        selection=selection,
        custom_fields=tuple((field_id, name) for field_id, name in fields),
    )


def export_rows(session: Session, export: SubscriberExport) -> Iterator[list[str | None]]:
    """The rows of `export`, one per subscriber in id order, cells in `export.header` order."""
    scope = AccountScope(session, export.account_id)
    column_of = {field_id: i for i, (field_id, _name) in enumerate(export.custom_fields)}
    after = 0
    while ids := selected_ids_after(session, scope, export.selection, after, BATCH):
        custom: dict[int, dict[int, str]] = defaultdict(dict)
        if column_of:
            values = session.execute(
                select(
                    CustomFieldValue.subscriber_id,
                    CustomFieldValue.field_type_id,
                    CustomFieldValue.value,
                ).where(CustomFieldValue.subscriber_id.in_(ids))
            )
            for subscriber_id, field_id, value in values:
                custom[subscriber_id][field_id] = value
        subscribers = session.scalars(
            select(Subscriber).where(Subscriber.id.in_(ids)).order_by(Subscriber.id)
        )
        for subscriber in subscribers:
            cells: list[str | None] = [None] * len(column_of)
            for field_id, value in custom[subscriber.id].items():
                if field_id in column_of:  # a field created after the export began
                    cells[column_of[field_id]] = value
            yield [
                subscriber.email,
                subscriber.first_name,
                subscriber.last_name,
                subscriber.phone_number,
                SUBSCRIBED if subscriber.opted_out_on is None else OPTED_OUT,
                *cells,
            ]
        after = ids[-1]
        session.expunge_all()  # what was yielded is written out; keep memory flat
