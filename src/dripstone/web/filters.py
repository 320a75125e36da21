"""The query parameters that filter subscribers on dashboard pages and in their exports,
parsed in one place: `list` (a list's id; absent: all contacts) and `search`."""

from __future__ import annotations

import re
from collections.abc import Mapping

from dripstone.errors import BadRequest
from dripstone.subscribers.schemas import SEARCH_MAX_LENGTH, SEARCH_PATTERN
from dripstone.subscribers.selection import SubscriberFilter
from dripstone.wire import is_uuid

_SEARCH = re.compile(SEARCH_PATTERN)


def parse_subscriber_filter(query: Mapping[str, str]) -> SubscriberFilter:
    """The filter a page's query names; malformed values are refused (400)."""
    list_id = query.get("list", "").strip() or None
    if list_id is not None and not is_uuid(list_id):
        raise BadRequest("list: not the id of a list", field="list")
    search = " ".join(query.get("search", "").split())
    if search and (len(search) > SEARCH_MAX_LENGTH or not _SEARCH.match(search)):
        raise BadRequest(
            "search: letters, digits and spaces only; every word must match an email or a name",
            field="search",
        )
    return SubscriberFilter(list_id=list_id.lower() if list_id else None, search=search)
