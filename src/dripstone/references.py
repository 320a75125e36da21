"""Rows that other domains point at. The domain that points (drips at lists and mailings)
registers how to find its uses; the owner refuses a delete that would leave them dangling,
without importing the domain above it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from dripstone.db import AccountScope
from dripstone.errors import Invalid

Row = TypeVar("Row")
# The first use of the row that forbids deleting it, said for a person ("the drip campaign
# 'Welcome' (…) runs on this list"), or None.
FindUse = Callable[[AccountScope, Row], str | None]


class Uses(Generic[Row]):
    """The registered ways a row of one kind can be in use elsewhere."""

    def __init__(self) -> None:
        self._finders: list[FindUse[Row]] = []

    def register(self, find: FindUse[Row]) -> FindUse[Row]:
        self._finders.append(find)
        return find

    def refuse_delete_if_used(self, scope: AccountScope, row: Row, *, field: str) -> None:
        """422 naming `field` and the first use found, if any."""
        for find in self._finders:
            use = find(scope, row)
            if use is not None:
                raise Invalid(use, field=field)
