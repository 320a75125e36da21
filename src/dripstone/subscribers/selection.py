"""Turn a search and filter groups into SQL over subscribers (select-all and segments)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.orm import Session

from dripstone.db import AccountScope
from dripstone.errors import Invalid
from dripstone.subscribers import counts
from dripstone.subscribers.lists import default_list
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
    Subscription,
    SubscriptionList,
)

BUILTIN_FIELDS = {
    "email": Subscriber.email,
    "first_name": Subscriber.first_name,
    "last_name": Subscriber.last_name,
    "phone_number": Subscriber.phone_number,
}


@dataclass(frozen=True)
class Selection:
    """Which subscribers: members of a list (None: everyone), matching search and filters."""

    list_id: int | None = None
    search: str = "*"
    filters: Sequence[Sequence[dict[str, Any]]] = ()
    except_ids: Sequence[int] = field(default_factory=tuple)

    @property
    def whole_list(self) -> bool:
        """Every member of the list: no search words, filters or exceptions."""
        return not _words(self.search) and not self.filters and not self.except_ids


def selected_list(scope: AccountScope, selection: Selection) -> SubscriptionList | None:
    """The list whose members a selection starts from (the default list for everyone)."""
    if selection.list_id is None:
        return default_list(scope)
    return scope.by_id(SubscriptionList, selection.list_id)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _words(search: str) -> list[str]:
    return [w for w in search.split() if w != "*"]


def search_condition(search: str) -> ColumnElement[bool]:
    """Every word must appear in the email, first name or last name (case-insensitive)."""
    conditions = []
    for word in _words(search):
        pattern = f"%{_escape_like(word.lower())}%"
        conditions.append(
            or_(
                *(
                    func.lower(column).like(pattern, escape="\\")
                    for column in (Subscriber.email, Subscriber.first_name, Subscriber.last_name)
                )
            )
        )
    return and_(true(), *conditions)


def _term_condition(column: Any, op: str, term: str) -> ColumnElement[bool]:
    value = func.lower(func.coalesce(column, ""))
    term = term.lower()
    escaped = _escape_like(term)
    if op in ("is", "is_not"):
        return value == term
    if op in ("contains", "does_not_contain"):
        return value.like(f"%{escaped}%", escape="\\")
    if op == "starts_with":
        return value.like(f"{escaped}%", escape="\\")
    return value.like(f"%{escaped}", escape="\\")


def _column_condition(column: Any, condition: dict[str, Any]) -> ColumnElement[bool]:
    op = condition["op"]
    if op == "is_empty":
        return func.coalesce(column, "") == ""
    if op == "is_not_empty":
        return func.coalesce(column, "") != ""
    matched = or_(false(), *(_term_condition(column, op, t) for t in condition["terms"]))
    return not_(matched) if op in ("is_not", "does_not_contain") else matched


def filter_condition(
    scope: AccountScope, groups: Sequence[Sequence[dict[str, Any]]]
) -> ColumnElement[bool]:
    """Groups are alternatives (OR); the conditions inside one group must all hold (AND)."""
    if not groups:
        return true()
    field_ids = _custom_field_ids(scope, groups)
    alternatives = []
    for group in groups:
        parts = []
        for condition in group:
            name = condition["field"]
            if name in BUILTIN_FIELDS:
                parts.append(_column_condition(BUILTIN_FIELDS[name], condition))
                continue
            value = (
                select(CustomFieldValue.value)
                .where(
                    CustomFieldValue.subscriber_id == Subscriber.id,
                    CustomFieldValue.field_type_id == field_ids[name],
                )
                .scalar_subquery()
            )
            parts.append(_column_condition(value, condition))
        alternatives.append(and_(*parts))
    return or_(*alternatives)


def _custom_field_ids(
    scope: AccountScope, groups: Sequence[Sequence[dict[str, Any]]]
) -> dict[str, int]:
    names = {c["field"] for g in groups for c in g if c["field"] not in BUILTIN_FIELDS}
    if not names:
        return {}
    rows = scope.session.execute(
        scope.select(CustomFieldType, CustomFieldType.name, CustomFieldType.id).where(
            CustomFieldType.name.in_(names)
        )
    ).all()
    found: dict[str, int] = {name: field_id for name, field_id in rows}  # noqa: C416
    unknown = sorted(names - found.keys())
    if unknown:
        raise Invalid(
            f"filters name unknown field {unknown[0]!r}; use email, first_name, last_name, "
            "phone_number or one of the account's custom fields",
            field="filters",
        )
    return found


def membership_condition(list_id: int | None) -> ColumnElement[bool]:
    """Subscribed (not unsubscribed) members of the list; None means all contacts."""
    if list_id is None:
        return true()
    return exists().where(
        Subscription.subscriber_id == Subscriber.id,
        Subscription.subscription_list_id == list_id,
        Subscription.unsubscribed_at.is_(None),
    )


def selection_condition(
    scope: AccountScope, selection: Selection, *, by_id: bool = False
) -> ColumnElement[bool]:
    """SQL over Subscriber for the selected subscribers; `by_id` when ids lead the query."""
    condition = and_(
        scope.owns(Subscriber) if by_id else Subscriber.account_id == scope.account_id,
        membership_condition(selection.list_id),
        search_condition(selection.search),
        filter_condition(scope, selection.filters),
    )
    if selection.except_ids:
        condition = and_(condition, Subscriber.id.not_in(selection.except_ids))
    return condition


def count_selected(scope: AccountScope, selection: Selection) -> int:
    lst = selected_list(scope, selection) if selection.whole_list else None
    if lst is not None:
        return counts.members(scope.session, lst)
    stmt = select(func.count()).select_from(Subscriber).where(selection_condition(scope, selection))
    return scope.session.scalar(stmt) or 0


def selected_ids_after(
    session: Session, scope: AccountScope, selection: Selection, after_id: int, limit: int
) -> list[int]:
    """The next `limit` selected subscriber ids above `after_id`, in id order."""
    stmt = (
        select(Subscriber.id)
        .where(selection_condition(scope, selection, by_id=True), Subscriber.id > after_id)
        .order_by(Subscriber.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))
