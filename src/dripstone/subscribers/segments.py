"""Dynamic lists (segments): a saved selection of a list's members by search and filters."""

from __future__ import annotations

from dripstone.db import AccountScope
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.subscribers import schemas
from dripstone.subscribers.lists import referenced_list
from dripstone.subscribers.models import (
    DynamicList,
)
from dripstone.subscribers.rows import unique_or_clash
from dripstone.subscribers.selection import (
    Selection,
    count_selected,
)


def referenced_dynamic_list(scope: AccountScope, list_id: str, field: str) -> DynamicList:
    found = scope.by_uuid(DynamicList, list_id)
    if found is None:
        raise Invalid(f"{field}: no dynamic list {list_id} in this account", field=field)
    return found


def get_dynamic_list(scope: AccountScope, list_id: str) -> DynamicList:
    found = scope.by_uuid(DynamicList, list_id)
    if found is None:
        raise NotFound(f"dynamic list {list_id} not found", field="id")
    return found


def segment_selection(segment: DynamicList) -> Selection:
    return Selection(
        list_id=segment.subscription_list_id, search=segment.search, filters=segment.filters
    )


def dynamic_list_count(scope: AccountScope, segment: DynamicList) -> int:
    return count_selected(scope, segment_selection(segment))


def list_dynamic_lists(scope: AccountScope) -> list[DynamicList]:
    return list(scope.session.scalars(scope.select(DynamicList).order_by(DynamicList.created_at)))


def save_dynamic_list(
    scope: AccountScope, fields: schemas.DynamicListFields, list_id: str | None = None
) -> DynamicList:
    """Create a dynamic list, or replace the definition of `list_id`."""
    segment = (
        get_dynamic_list(scope, list_id) if list_id else DynamicList(account_id=scope.account_id)
    )

    def check_name() -> None:
        clash = scope.session.scalars(
            scope.select(DynamicList).where(DynamicList.name == fields.name)
        ).first()
        if clash is not None and clash is not segment:
            raise Conflict(
                f"dynamic_list.name: {fields.name!r} is taken", field="dynamic_list.name"
            )

    check_name()
    base = None
    if fields.subscription_list_id:
        base = referenced_list(
            scope, fields.subscription_list_id, "dynamic_list.subscription_list_id"
        )
    segment.name = fields.name
    segment.subscription_list_id = None if base is None or base.is_default else base.id
    segment.search = fields.search
    segment.filters = [[c.model_dump() for c in group] for group in fields.filters]
    with unique_or_clash(scope, check_name):
        scope.session.add(segment)
    dynamic_list_count(scope, segment)  # names an unknown filter field before saving
    return segment


def delete_dynamic_list(scope: AccountScope, list_id: str) -> None:
    scope.session.delete(get_dynamic_list(scope, list_id))
    scope.session.flush()
