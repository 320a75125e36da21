"""Filters typed into a form as rows (field, operator, values; "or" starts another group),
turned into the filter groups the API's selections take, and errors put back on their row.

The subscribers page and the dynamic list form both build filters this way, and both
validate the result with the API's own schemas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from starlette.datastructures import ImmutableMultiDict

from dripstone.db import AccountScope
from dripstone.subscribers.custom_fields import list_field_types
from dripstone.subscribers.schemas import FilterOp
from dripstone.subscribers.selection import BUILTIN_FIELDS

OPERATORS: tuple[tuple[str, str], ...] = (
    ("is", "is"),
    ("is_not", "is not"),
    ("contains", "contains"),
    ("does_not_contain", "does not contain"),
    ("starts_with", "starts with"),
    ("ends_with", "ends with"),
    ("is_empty", "is empty"),
    ("is_not_empty", "is not empty"),
)
assert {op for op, _ in OPERATORS} == set(get_args(FilterOp))
FIELD_LABELS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "phone_number": "Phone number",
}
assert FIELD_LABELS.keys() == BUILTIN_FIELDS.keys()


@dataclass(frozen=True)
class FilterRow:
    """One condition as typed: `join` is "and" or "or" (an "or" starts a new group)."""

    join: str = "and"
    field: str = ""
    op: str = "is"
    terms: str = ""


def rows_of(form: ImmutableMultiDict[str, Any]) -> list[FilterRow]:
    """The rows typed in a form (parallel `field`, `op`, `terms`, `join` values)."""
    fields = [str(v) for v in form.getlist("field")]
    ops = [str(v) for v in form.getlist("op")]
    terms = [str(v) for v in form.getlist("terms")]
    joins = [str(v) for v in form.getlist("join")]

    def at(values: list[str], i: int, default: str) -> str:
        return values[i] if i < len(values) else default

    return [
        FilterRow(at(joins, i, "and"), field, at(ops, i, "is"), at(terms, i, ""))
        for i, field in enumerate(fields)
    ]


def groups_of(rows: Sequence[FilterRow]) -> tuple[list[list[dict[str, Any]]], list[int]]:
    """The filter groups of the rows (blank rows left out), and for each condition in
    order the index of the row it came from (to put an error back on its row)."""
    groups: list[list[dict[str, Any]]] = []
    origin: list[int] = []
    for index, row in enumerate(rows):
        if not row.field.strip():
            continue
        terms = [t.strip() for t in row.terms.split(",") if t.strip()]
        condition: dict[str, Any] = {"field": row.field, "op": row.op, "terms": terms}
        if not groups or row.join == "or":
            groups.append([])
        groups[-1].append(condition)
        origin.append(index)
    return groups, origin


def row_errors(
    errors: Mapping[str, str], groups: Sequence[Sequence[Any]], origin: Sequence[int], prefix: str
) -> dict[str, str]:
    """Errors of `prefix.G.C...` locations moved to `row-N` (the row typed); others kept."""
    flat: dict[tuple[int, int], int] = {}
    position = 0
    for g, group in enumerate(groups):
        for c in range(len(group)):
            flat[(g, c)] = origin[position]
            position += 1
    moved: dict[str, str] = {}
    for location, message in errors.items():
        parts = location.split(".")
        if location.startswith(prefix + ".") and len(parts) >= 3 and parts[1].isdigit():
            group_index = int(parts[1])
            condition = int(parts[2]) if parts[2].isdigit() else 0
            row = flat.get((group_index, condition))
            if row is not None:
                moved.setdefault(f"row-{row}", message)
                continue
        moved.setdefault(prefix if location.startswith(prefix) else location, message)
    return moved


def rows_from_groups(groups: Sequence[Sequence[Mapping[str, Any]]]) -> list[FilterRow]:
    """The rows that type in these saved groups again (to edit a dynamic list)."""
    return [
        FilterRow(
            "or" if c == 0 and g > 0 else "and",
            str(condition["field"]),
            str(condition["op"]),
            ", ".join(condition.get("terms") or []),
        )
        for g, group in enumerate(groups)
        for c, condition in enumerate(group)
    ]


def field_choices(scope: AccountScope) -> list[tuple[str, str]]:
    """(value, label) of every field a filter may name: the built-in ones, then the
    account's custom fields."""
    custom = [(f.name, f"{f.name} (custom)") for f in list_field_types(scope)]
    return [*FIELD_LABELS.items(), *custom]
