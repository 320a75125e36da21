"""Rows that other domains point at. The domain that points (drips at lists and mailings)
registers how to find its uses; the owner refuses a delete that would leave them dangling,
without importing the domain above it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dripstone.db import AccountScope
from dripstone.errors import Invalid

Row = TypeVar("Row")


@dataclass(frozen=True)
class InUse:
    """Why a row cannot be deleted, said for a person, with ids for a program."""

    message: str  # "the drip campaign 'Welcome' (…) sends this mailing at its step 'hello'"
    details: dict[str, Any] = field(default_factory=dict)


# The first use of each of the rows (in their order), or None where a row is free.
FindUses = Callable[[AccountScope, Sequence[Row]], list[InUse | None]]


class Uses(Generic[Row]):
    """The registered ways rows of one kind can be in use elsewhere."""

    def __init__(self) -> None:
        self._finders: list[FindUses[Row]] = []

    def register(self, find: FindUses[Row]) -> FindUses[Row]:
        self._finders.append(find)
        return find

    def refuse_delete_if_used(
        self, scope: AccountScope, rows: Sequence[Row], fields: Sequence[str]
    ) -> None:
        """422 for the first row in use, naming its field (`fields[i]` names `rows[i]`)."""
        for find in self._finders:
            for name, use in zip(fields, find(scope, rows), strict=True):
                if use is not None:
                    raise Invalid(f"{name}: {use.message}", field=name, **use.details)
