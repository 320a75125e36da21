"""Custom fields: the account's field types and each subscriber's values."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, update

from dripstone import clock
from dripstone.db import AccountScope, insert_ignoring_duplicates, insert_rows, new_uuid
from dripstone.errors import Conflict
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
)
from dripstone.subscribers.rows import unique_or_clash


def merge_custom(pairs: Sequence[dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for pair in pairs:
        merged.update(pair)
    return merged


def list_field_types(scope: AccountScope) -> list[CustomFieldType]:
    stmt = scope.select(CustomFieldType).order_by(CustomFieldType.name)
    return list(scope.session.scalars(stmt))


def _check_field_type_name(scope: AccountScope, name: str) -> None:
    stmt = scope.select(CustomFieldType).where(CustomFieldType.name == name)
    if scope.session.scalars(stmt).first() is not None:
        raise Conflict(
            f"subscriber_custom_field_type.name: a custom field named {name!r} already exists",
            field="subscriber_custom_field_type.name",
        )


def create_field_type(scope: AccountScope, name: str) -> CustomFieldType:
    _check_field_type_name(scope, name)
    field_type = CustomFieldType(account_id=scope.account_id, name=name)
    with unique_or_clash(scope, lambda: _check_field_type_name(scope, name)):
        scope.session.add(field_type)
    return field_type


def field_type_ids(scope: AccountScope, names: set[str]) -> dict[str, int]:
    """Ids of the named custom fields, creating those the account does not have yet
    (a concurrent request creating the same field is no clash: both use the one row)."""
    stmt = scope.select(CustomFieldType, CustomFieldType.name, CustomFieldType.id).where(
        CustomFieldType.name.in_(names)
    )
    ids: dict[str, int] = dict(scope.session.execute(stmt).all())
    missing = sorted(names - ids.keys())
    if missing:
        now = clock.now()
        scope.session.connection().execute(
            insert_ignoring_duplicates(scope.session, CustomFieldType, "account_id", "name"),
            [
                {"uuid": new_uuid(), "account_id": scope.account_id, "name": n, "created_at": now}
                for n in missing
            ],
        )
        ids = dict(scope.session.execute(stmt).all())
    return ids


def add_custom_fields(scope: AccountScope, values: dict[int, dict[str, str]]) -> None:
    """Give new subscribers (who have no values yet) their custom field values, creating
    unknown field types on first use."""
    values = {sid: fields for sid, fields in values.items() if fields}
    if not values:
        return
    type_ids = field_type_ids(scope, {name for fields in values.values() for name in fields})
    insert_rows(
        scope.session,
        CustomFieldValue,
        ("subscriber_id", "field_type_id", "value"),
        [
            (sid, type_ids[name], value)
            for sid, fields in values.items()
            for name, value in fields.items()
        ],
    )


def set_custom_field(scope: AccountScope, subscriber_id: int, name: str, value: str) -> None:
    """Set one custom field of one subscriber, creating the field type on first use."""
    type_id = field_type_ids(scope, {name})[name]
    scope.session.execute(
        delete(CustomFieldValue).where(
            CustomFieldValue.subscriber_id == subscriber_id,
            CustomFieldValue.field_type_id == type_id,
        )
    )
    scope.session.execute(
        insert(CustomFieldValue).values(
            subscriber_id=subscriber_id, field_type_id=type_id, value=value
        )
    )
    scope.session.execute(
        update(Subscriber).where(Subscriber.id == subscriber_id).values(updated_at=clock.now())
    )
