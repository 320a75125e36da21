"""Subscription lists: the default list (All contacts) of every account, named lists, and
their counts."""

from __future__ import annotations

from sqlalchemy.orm import Session

from dripstone.accounts import service as accounts
from dripstone.db import AccountScope
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.references import Uses
from dripstone.subscribers import counts
from dripstone.subscribers.models import SubscriptionList
from dripstone.subscribers.rows import unique_or_clash

DEFAULT_LIST_NAME = "All contacts"


# Domains whose rows point at a list (drip campaigns) register here; such a list stays.
LIST_USES: Uses[SubscriptionList] = Uses()


@accounts.on_account_created
def create_default_list(session: Session, account_id: int) -> SubscriptionList:
    default = SubscriptionList(account_id=account_id, name=DEFAULT_LIST_NAME, is_default=True)
    session.add(default)
    session.flush()
    counts.start_counts(session, default)
    return default


def default_list(scope: AccountScope) -> SubscriptionList:
    stmt = scope.select(SubscriptionList).where(SubscriptionList.is_default.is_(True))
    found: SubscriptionList = scope.session.scalars(stmt).one()
    return found


def get_list(scope: AccountScope, list_id: str) -> SubscriptionList:
    """The list with public id `list_id` (404 when this account has none)."""
    found = scope.by_uuid(SubscriptionList, list_id)
    if found is None:
        raise NotFound(f"subscription list {list_id} not found", field="id")
    return found


def referenced_list(scope: AccountScope, list_id: str, field: str) -> SubscriptionList:
    """A list named in a request body or query (422 naming `field` when unknown)."""
    found = scope.by_uuid(SubscriptionList, list_id)
    if found is None:
        raise Invalid(f"{field}: no subscription list {list_id} in this account", field=field)
    return found


def all_lists(scope: AccountScope) -> list[SubscriptionList]:
    """Every list of the account, the default list first, then in order of creation; no
    counts (cheap enough for a form's choice of list)."""
    return list(
        scope.session.scalars(
            scope.select(SubscriptionList).order_by(
                SubscriptionList.is_default.desc(), SubscriptionList.created_at, SubscriptionList.id
            )
        )
    )


def list_lists(scope: AccountScope) -> list[tuple[SubscriptionList, int]]:
    """Every list with its number of members (the default list: every subscriber)."""
    lists = all_lists(scope)
    kept = counts.kept(scope.session, lists)
    return [(lst, kept[lst.id].members if lst.id in kept else 0) for lst in lists]


def list_count(scope: AccountScope, lst: SubscriptionList) -> int:
    """The list's members (the default list: every subscriber), a kept count."""
    return counts.members(scope.session, lst)


def _check_list_name(scope: AccountScope, name: str, current: SubscriptionList | None) -> None:
    folded = name.casefold()
    if folded == "default":
        raise Invalid("name: a list may not be named 'default'", field="name")
    # Compared in Python: SQLite's lower() folds ASCII letters only. An account has few lists.
    names = scope.session.execute(
        scope.select(SubscriptionList, SubscriptionList.id, SubscriptionList.name)
    ).all()
    for list_id, existing in names:
        if existing.casefold() == folded and (current is None or list_id != current.id):
            raise Conflict(f"name: a list named {existing!r} already exists", field="name")


def create_list(scope: AccountScope, name: str) -> SubscriptionList:
    _check_list_name(scope, name, None)
    lst = SubscriptionList(account_id=scope.account_id, name=name)
    with unique_or_clash(scope, lambda: _check_list_name(scope, name, None)):
        scope.session.add(lst)
    counts.start_counts(scope.session, lst)
    return lst


def rename_list(scope: AccountScope, list_id: str, name: str) -> SubscriptionList:
    lst = get_list(scope, list_id)
    if lst.is_default:
        raise Invalid("the default list cannot be renamed", field="id")
    _check_list_name(scope, name, lst)
    with unique_or_clash(scope, lambda: _check_list_name(scope, name, lst)):
        lst.name = name
    return lst


def delete_list(scope: AccountScope, list_id: str) -> None:
    lst = get_list(scope, list_id)
    if lst.is_default:
        raise Invalid("the default list (All contacts) cannot be deleted", field="id")
    LIST_USES.refuse_delete_if_used(scope, [lst], ["id"])
    scope.session.delete(lst)
    scope.session.flush()


def list_uuid(scope: AccountScope, internal_id: int | None) -> str | None:
    if internal_id is None:
        return None
    lst = scope.by_id(SubscriptionList, internal_id)
    return lst.uuid if lst else None
