"""Subscribers, lists, subscriptions and custom fields: the domain logic, no HTTP."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope, insert_ignoring_duplicates, new_uuid
from dripstone.delivery import service as delivery
from dripstone.drips.models import DripCampaign
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.subscribers import schemas
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    DynamicList,
    Subscriber,
    Subscription,
    SubscriptionEvent,
    SubscriptionList,
)
from dripstone.subscribers.selection import (
    Selection,
    count_selected,
    membership_condition,
    search_condition,
    selected_ids_after,
)

DEFAULT_LIST_NAME = "All contacts"
BULK_SUBSCRIPTION_JOB = "bulk_subscription"
ORDERABLE = {
    "first_name": Subscriber.first_name,
    "last_name": Subscriber.last_name,
    "email": Subscriber.email,
    "created_at": Subscriber.created_at,
    "updated_at": Subscriber.updated_at,
}
# Keep each IN (...) well under SQLite's bound-parameter limit.
IN_CHUNK = 5000
_PUBLIC_ID = re.compile(schemas.UUID_PATTERN)
M = TypeVar("M")


def _chunks(values: Sequence[Any], size: int = IN_CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _by_public_id(scope: AccountScope, model: type[M], public_id: str) -> M | None:
    """The row with this public id. An id that is not a UUID names nothing: it is not looked up
    (path ids are free text, and PostgreSQL refuses text with a NUL character in it)."""
    if not _PUBLIC_ID.fullmatch(public_id):
        return None
    return scope.by_uuid(model, public_id.lower())


@contextmanager
def _unique(scope: AccountScope, clash: Callable[[], None]) -> Iterator[None]:
    """Write the block's rows in a savepoint. When a unique index refuses them (a concurrent
    request wrote the same value after our check), `clash` re-checks and raises the 422 that
    names the field; the savepoint keeps the session usable for that."""
    try:
        with scope.session.begin_nested():
            yield
            scope.session.flush()
    except IntegrityError:
        clash()
        raise


# --- lists ---------------------------------------------------------------------------------


def create_default_list(session: Session, account_id: int) -> SubscriptionList:
    default = SubscriptionList(account_id=account_id, name=DEFAULT_LIST_NAME, is_default=True)
    session.add(default)
    session.flush()
    return default


def default_list(scope: AccountScope) -> SubscriptionList:
    stmt = scope.select(SubscriptionList).where(SubscriptionList.is_default.is_(True))
    found: SubscriptionList = scope.session.scalars(stmt).one()
    return found


def get_list(scope: AccountScope, list_id: str) -> SubscriptionList:
    """The list with public id `list_id` (404 when this account has none)."""
    found = _by_public_id(scope, SubscriptionList, list_id)
    if found is None:
        raise NotFound(f"subscription list {list_id} not found", field="id")
    return found


def referenced_list(scope: AccountScope, list_id: str, field: str) -> SubscriptionList:
    """A list named in a request body or query (422 naming `field` when unknown)."""
    found = _by_public_id(scope, SubscriptionList, list_id)
    if found is None:
        raise Invalid(f"{field}: no subscription list {list_id} in this account", field=field)
    return found


def list_lists(scope: AccountScope) -> list[tuple[SubscriptionList, int]]:
    lists = list(
        scope.session.scalars(
            scope.select(SubscriptionList).order_by(
                SubscriptionList.is_default.desc(), SubscriptionList.created_at, SubscriptionList.id
            )
        )
    )
    counts = subscriber_counts(scope, [lst for lst in lists if not lst.is_default])
    total = scope.session.scalar(scope.select(Subscriber, func.count()))
    return [(lst, total or 0 if lst.is_default else counts.get(lst.id, 0)) for lst in lists]


def subscriber_counts(scope: AccountScope, lists: Sequence[SubscriptionList]) -> dict[int, int]:
    if not lists:
        return {}
    stmt = (
        scope.select(Subscription, Subscription.subscription_list_id, func.count())
        .where(
            Subscription.subscription_list_id.in_([lst.id for lst in lists]),
            Subscription.unsubscribed_at.is_(None),
        )
        .group_by(Subscription.subscription_list_id)
    )
    return dict(scope.session.execute(stmt).all())


def list_count(scope: AccountScope, lst: SubscriptionList) -> int:
    if lst.is_default:
        return scope.session.scalar(scope.select(Subscriber, func.count())) or 0
    return subscriber_counts(scope, [lst]).get(lst.id, 0)


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
    with _unique(scope, lambda: _check_list_name(scope, name, None)):
        scope.session.add(lst)
    return lst


def rename_list(scope: AccountScope, list_id: str, name: str) -> SubscriptionList:
    lst = get_list(scope, list_id)
    if lst.is_default:
        raise Invalid("the default list cannot be renamed", field="id")
    _check_list_name(scope, name, lst)
    with _unique(scope, lambda: _check_list_name(scope, name, lst)):
        lst.name = name
    return lst


def delete_list(scope: AccountScope, list_id: str) -> None:
    lst = get_list(scope, list_id)
    if lst.is_default:
        raise Invalid("the default list (All contacts) cannot be deleted", field="id")
    campaign = scope.session.scalars(
        scope.select(DripCampaign).where(
            DripCampaign.subscription_list_id == lst.id, DripCampaign.deleted_at.is_(None)
        )
    ).first()
    if campaign is not None:
        # Deleting the list would delete the campaign and its enrollments with it.
        raise Invalid(
            f"the drip campaign {campaign.name!r} ({campaign.uuid}) runs on this list: "
            "delete the campaign first",
            field="id",
        )
    scope.session.delete(lst)
    scope.session.flush()


# --- subscription events -----------------------------------------------------------------------


def record_joins(scope: AccountScope, list_id: int, subscriber_ids: Sequence[int]) -> None:
    """Record that these subscribers joined the list; drip triggers consume these events."""
    if not subscriber_ids:
        return
    now = clock.now()
    # Core executemany on the session's connection: the ORM bulk path costs several times more.
    scope.session.connection().execute(
        insert(SubscriptionEvent).values(
            account_id=scope.account_id, subscription_list_id=list_id, occurred_at=now
        ),
        [{"subscriber_id": sid} for sid in subscriber_ids],
    )


def _join(scope: AccountScope, lst: SubscriptionList, subscriber_ids: Sequence[int]) -> list[int]:
    """Add subscribers to a list they are not on; returns who was added (and records events).
    Members who unsubscribed from it stay unsubscribed: only an explicit subscribe re-adds them."""
    if lst.is_default or not subscriber_ids:
        return []
    now = clock.now()
    added: list[int] = []
    for chunk in _chunks(subscriber_ids):
        stmt = insert_ignoring_duplicates(
            scope.session, Subscription, "subscription_list_id", "subscriber_id"
        ).returning(Subscription.subscriber_id)
        rows = [
            {
                "uuid": new_uuid(),
                "account_id": scope.account_id,
                "subscription_list_id": lst.id,
                "subscriber_id": sid,
                "created_at": now,
                "updated_at": now,
            }
            for sid in chunk
        ]
        added.extend(scope.session.connection().scalars(stmt, rows))
    record_joins(scope, lst.id, added)
    return added


def add_to_list(scope: AccountScope, lst: SubscriptionList, subscriber_ids: Sequence[int]) -> None:
    """Add subscribers to a list on Dripstone's own initiative (a drip action): those who
    unsubscribed from it stay unsubscribed, and no one's global opt-out is lifted."""
    _join(scope, lst, subscriber_ids)


def _rejoin(scope: AccountScope, lst: SubscriptionList, subscriber_ids: Sequence[int]) -> None:
    """Subscribe to a list: add the missing and clear `unsubscribed_at` on the rest."""
    _join(scope, lst, subscriber_ids)
    if lst.is_default:
        return
    for chunk in _chunks(subscriber_ids):
        returned = scope.session.scalars(
            update(Subscription)
            .where(
                Subscription.subscription_list_id == lst.id,
                Subscription.subscriber_id.in_(chunk),
                Subscription.unsubscribed_at.is_not(None),
            )
            .values(unsubscribed_at=None, updated_at=clock.now())
            .returning(Subscription.subscriber_id)
        ).all()
        record_joins(scope, lst.id, returned)


# --- subscribers ---------------------------------------------------------------------------


def get_subscriber(scope: AccountScope, subscriber_id: str) -> Subscriber:
    found = _by_public_id(scope, Subscriber, subscriber_id)
    if found is None:
        raise NotFound(f"subscriber {subscriber_id} not found", field="id")
    return found


def list_subscribers(
    scope: AccountScope,
    *,
    items: int,
    page: int,
    search: str,
    order_by: str,
    order: Literal["asc", "desc"],
    list_id: str | None,
) -> list[Subscriber]:
    stmt = scope.select(Subscriber, Subscriber.id).where(search_condition(search))
    if list_id is not None:
        lst = referenced_list(scope, list_id, "subscription_list_id")
        if not lst.is_default:
            stmt = stmt.where(membership_condition(lst.id))
    column = ORDERABLE[order_by]
    ordering = (
        (column.asc(), Subscriber.id.asc())
        if order == "asc"
        else (
            column.desc(),
            Subscriber.id.desc(),
        )
    )
    # Page through ids alone (an index-only walk), then fetch just the rows of the page.
    page_ids = stmt.order_by(*ordering).limit(items).offset((page - 1) * items).subquery()
    rows = select(Subscriber).join(page_ids, Subscriber.id == page_ids.c.id).order_by(*ordering)
    return list(scope.session.scalars(rows))


def _ensure_unique_email(scope: AccountScope, email: str, current: Subscriber | None) -> None:
    clash = scope.session.scalars(scope.select(Subscriber).where(Subscriber.email == email)).first()
    if clash is not None and clash is not current:
        raise Conflict(
            f"subscriber.email: {email} is already a subscriber",
            field="subscriber.email",
            subscriber_id=clash.uuid,
        )


def create_subscriber(
    scope: AccountScope, fields: schemas.SubscriberCreateFields, list_id: str | None
) -> Subscriber:
    target = referenced_list(scope, list_id, "subscription_list_id") if list_id else None
    if fields.email is not None:
        _ensure_unique_email(scope, fields.email, None)
    subscriber = Subscriber(
        account_id=scope.account_id,
        email=fields.email,
        phone_number=fields.phone_number,
        first_name=fields.first_name,
        last_name=fields.last_name,
    )
    email = fields.email
    with _unique(scope, lambda: _ensure_unique_email(scope, email, None) if email else None):
        scope.session.add(subscriber)
    add_custom_fields(scope, {subscriber.id: _merge_custom(fields.custom_fields)})
    record_joins(scope, default_list(scope).id, [subscriber.id])
    if target is not None:
        _join(scope, target, [subscriber.id])
    return subscriber


def update_subscriber(
    scope: AccountScope, subscriber_id: str, fields: schemas.SubscriberUpdateFields
) -> Subscriber:
    subscriber = get_subscriber(scope, subscriber_id)
    changes = fields.model_dump(include=fields.model_fields_set)
    if changes.get("email"):
        _ensure_unique_email(scope, changes["email"], subscriber)
    email = changes.get("email")
    with _unique(scope, lambda: _ensure_unique_email(scope, email, subscriber) if email else None):
        for name, value in changes.items():
            setattr(subscriber, name, value)
        if subscriber.email is None and subscriber.phone_number is None:
            raise Invalid(
                "subscriber: a subscriber needs an email or a phone_number",
                field="subscriber.email",
            )
    return subscriber


def _merge_custom(pairs: Sequence[dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for pair in pairs:
        merged.update(pair)
    return merged


def bulk_create(
    scope: AccountScope, rows: Sequence[schemas.BulkSubscriberRow], list_id: str | None
) -> int:
    """Add new subscribers (and everyone given to the list); returns how many were new.
    Existing subscribers are left as they are, apart from joining the list."""
    target = referenced_list(scope, list_id, "subscription_list_id") if list_id else None
    by_email = {row.email: row for row in rows}
    emails = list(by_email)
    ids: dict[str, int] = {}
    for chunk in _chunks(emails):
        found = scope.session.execute(
            scope.select(Subscriber, Subscriber.email, Subscriber.id).where(
                Subscriber.email.in_(chunk)
            )
        )
        ids.update(found.all())
    now = clock.now()
    fresh = [
        {
            "uuid": new_uuid(),
            "email": email,
            "first_name": by_email[email].first_name,
            "last_name": by_email[email].last_name,
        }
        for email in emails
        if email not in ids
    ]
    added: dict[str, int] = {}
    if fresh:
        stmt = (
            insert_ignoring_duplicates(scope.session, Subscriber, "account_id", "email")
            .values(account_id=scope.account_id, created_at=now, updated_at=now)
            .returning(Subscriber.email, Subscriber.id)
        )
        added = dict(scope.session.connection().execute(stmt, fresh).all())
        ids.update(added)
    custom = {
        added[email]: _merge_custom(by_email[email].custom_fields)
        for email in added
        if by_email[email].custom_fields
    }
    add_custom_fields(scope, custom)
    record_joins(scope, default_list(scope).id, list(added.values()))
    if target is not None:
        _join(scope, target, [ids[email] for email in emails if email in ids])
    return len(added)


def bulk_delete(scope: AccountScope, subscriber_ids: Sequence[str], list_id: str | None) -> None:
    """Delete the subscribers, or with a list only take them off that list."""
    internal = _resolve_subscribers(scope, subscriber_ids, "subscriber_ids")
    lst = referenced_list(scope, list_id, "subscription_list_id") if list_id else None
    for chunk in _chunks(internal):
        if lst is not None and not lst.is_default:
            scope.session.execute(
                delete(Subscription).where(
                    Subscription.subscription_list_id == lst.id,
                    Subscription.subscriber_id.in_(chunk),
                )
            )
        else:
            scope.session.execute(
                delete(Subscriber).where(
                    Subscriber.account_id == scope.account_id, Subscriber.id.in_(chunk)
                )
            )


def _resolve_subscribers(scope: AccountScope, public_ids: Sequence[str], field: str) -> list[int]:
    """Internal ids of the given subscribers; 422 naming the first unknown one."""
    wanted = list(dict.fromkeys(public_ids))
    found: dict[str, int] = {}
    for chunk in _chunks(wanted):
        rows = scope.session.execute(
            scope.select(Subscriber, Subscriber.uuid, Subscriber.id).where(
                Subscriber.uuid.in_(chunk)
            )
        )
        found.update(rows.all())
    missing = [pid for pid in wanted if pid not in found]
    if missing:
        raise Invalid(
            f"{field}: no subscriber {missing[0]} in this account"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
            field=field,
            unknown_ids=missing[:100],
        )
    return [found[pid] for pid in wanted]


# --- custom fields ---------------------------------------------------------------------------


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
    with _unique(scope, lambda: _check_field_type_name(scope, name)):
        scope.session.add(field_type)
    return field_type


def _field_type_ids(scope: AccountScope, names: set[str]) -> dict[str, int]:
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
    type_ids = _field_type_ids(scope, {name for fields in values.values() for name in fields})
    scope.session.connection().execute(
        insert(CustomFieldValue),
        [
            {"subscriber_id": sid, "field_type_id": type_ids[name], "value": value}
            for sid, fields in values.items()
            for name, value in fields.items()
        ],
    )


def set_custom_field(scope: AccountScope, subscriber_id: int, name: str, value: str) -> None:
    """Set one custom field of one subscriber, creating the field type on first use."""
    type_id = _field_type_ids(scope, {name})[name]
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


# --- detailed view -----------------------------------------------------------------------------


def describe(
    scope: AccountScope, subscribers: Sequence[Subscriber], *, with_stats: bool = False
) -> list[schemas.DetailedSubscriberResource]:
    """The detailed form of each subscriber: custom fields, lists and optionally statistics."""
    ids = [s.id for s in subscribers]
    fields: dict[int, list[schemas.CustomFieldValueOut]] = {sid: [] for sid in ids}
    memberships: dict[int, list[schemas.MembershipOut]] = {sid: [] for sid in ids}
    for chunk in _chunks(ids):
        for sid, type_uuid, name, value in scope.session.execute(
            select(
                CustomFieldValue.subscriber_id,
                CustomFieldType.uuid,
                CustomFieldType.name,
                CustomFieldValue.value,
            )
            .join(CustomFieldType, CustomFieldType.id == CustomFieldValue.field_type_id)
            .where(CustomFieldValue.subscriber_id.in_(chunk))
            .order_by(CustomFieldType.name)
        ):
            fields[sid].append(
                schemas.CustomFieldValueOut(
                    subscriber_custom_field_type_id=type_uuid,
                    custom_field_name=name,
                    custom_field_value=value,
                )
            )
        for sid, list_uuid, name, unsubscribed_at in scope.session.execute(
            select(
                Subscription.subscriber_id,
                SubscriptionList.uuid,
                SubscriptionList.name,
                Subscription.unsubscribed_at,
            )
            .join(SubscriptionList, SubscriptionList.id == Subscription.subscription_list_id)
            .where(Subscription.subscriber_id.in_(chunk))
            .order_by(SubscriptionList.name)
        ):
            memberships[sid].append(
                schemas.MembershipOut(
                    id=list_uuid, name=name, unsubscribed=unsubscribed_at is not None
                )
            )
    everyone = default_list(scope)
    counts = delivery.subscriber_counts(scope.session, scope.account_id, ids) if with_stats else {}
    described = []
    for s in subscribers:
        lists = [
            schemas.MembershipOut(
                id=everyone.uuid, name=everyone.name, unsubscribed=s.opted_out_on is not None
            ),
            *memberships[s.id],
        ]
        stats = None
        if with_stats:
            sent = counts.get(s.id, {})
            stats = schemas.SubscriberStatistics(
                deliveries=sent.get("deliveries", 0),
                delivered=sent.get("delivered", 0),
                opened=sent.get("opened", 0),
                clicked=sent.get("clicked", 0),
                soft_bounced=sent.get("soft_bounced", 0),
                hard_bounced=sent.get("hard_bounced", 0),
                unsubscribed=sum(1 for m in memberships[s.id] if m.unsubscribed),
                global_unsubscribed=int(s.opted_out_on is not None),
            )
        described.append(
            schemas.DetailedSubscriberResource(
                id=s.uuid,
                attributes=schemas.DetailedSubscriberAttributes(
                    **summary(s).model_dump(),
                    created_at=s.created_at,
                    updated_at=s.updated_at,
                    custom_fields=fields[s.id],
                    subscription_lists=lists,
                    statistics=stats,
                ),
            )
        )
    return described


def summary(subscriber: Subscriber) -> schemas.SubscriberAttributes:
    return schemas.SubscriberAttributes(
        email=subscriber.email,
        phone_number=subscriber.phone_number,
        first_name=subscriber.first_name,
        last_name=subscriber.last_name,
        unsubscribed=subscriber.opted_out_on is not None,
    )


# --- subscriptions -------------------------------------------------------------------------


def list_subscriptions(scope: AccountScope) -> list[schemas.SubscriptionRecord]:
    return _records(scope, scope.select(Subscription).order_by(Subscription.id))


def get_subscription(scope: AccountScope, subscription_id: str) -> schemas.SubscriptionRecord:
    stmt = scope.select(Subscription).where(Subscription.uuid == subscription_id)
    records = _records(scope, stmt) if _PUBLIC_ID.fullmatch(subscription_id) else []
    if not records:
        raise NotFound(f"subscription {subscription_id} not found", field="id")
    return records[0]


def _records(scope: AccountScope, stmt: Any) -> list[schemas.SubscriptionRecord]:
    subscriptions = list(scope.session.scalars(stmt))
    list_uuids: dict[int, str] = dict(
        scope.session.execute(
            scope.select(SubscriptionList, SubscriptionList.id, SubscriptionList.uuid)
        ).all()
    )
    dynamic_uuids: dict[int, str] = dict(
        scope.session.execute(scope.select(DynamicList, DynamicList.id, DynamicList.uuid)).all()
    )
    return [
        schemas.SubscriptionRecord(
            id=s.id,
            uuid=s.uuid,
            subscription_list_id=list_uuids.get(s.subscription_list_id)
            if s.subscription_list_id
            else None,
            dynamic_list_id=dynamic_uuids.get(s.dynamic_list_id) if s.dynamic_list_id else None,
            subscriber_id=s.subscriber_id,
            unsubscribed_at=s.unsubscribed_at,
            delete_at=s.delete_at,
            created_at=s.created_at,
            updated_at=s.updated_at,
        )
        for s in subscriptions
    ]


def create_subscription(
    scope: AccountScope, list_id: str, subscriber_id: int
) -> schemas.SubscriptionRecord:
    """Subscribe one subscriber to one list (re-subscribing one who had unsubscribed)."""
    lst = referenced_list(scope, list_id, "subscription.subscription_list_id")
    subscriber = scope.by_id(Subscriber, subscriber_id)
    if subscriber is None:
        raise Invalid(
            f"subscription.subscriber_id: no subscriber {subscriber_id} in this account",
            field="subscription.subscriber_id",
        )
    if lst.is_default:
        raise Conflict("every subscriber is already on the default list", field="subscription")
    stmt = scope.select(Subscription).where(
        Subscription.subscription_list_id == lst.id, Subscription.subscriber_id == subscriber.id
    )
    existing = scope.session.scalars(stmt).first()
    if existing is not None and existing.unsubscribed_at is None:
        raise Conflict(
            f"subscriber {subscriber_id} is already subscribed to this list", field="subscription"
        )
    _rejoin(scope, lst, [subscriber.id])
    return _records(scope, stmt)[0]


def cancel_subscription(scope: AccountScope, subscription_id: str) -> schemas.SubscriptionRecord:
    stmt = scope.select(Subscription).where(Subscription.uuid == subscription_id)
    subscription = (
        scope.session.scalars(stmt).first() if _PUBLIC_ID.fullmatch(subscription_id) else None
    )
    if subscription is None:
        raise NotFound(f"subscription {subscription_id} not found", field="id")
    if subscription.unsubscribed_at is None:
        subscription.unsubscribed_at = clock.now()
        scope.session.flush()
    return _records(scope, stmt)[0]


def change_subscriptions(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    subscriber_ids: Sequence[str],
    list_ids: Sequence[str] | None,
) -> list[Subscriber]:
    """Opt subscribers in or out: of the given lists, or globally without lists.
    Subscribing always lifts a global opt-out."""
    internal = _resolve_subscribers(scope, subscriber_ids, "subscriber_ids")
    lists = [referenced_list(scope, lid, "subscription_list_ids") for lid in list_ids or []]
    now = clock.now()
    if action == "subscribe":
        _set_global_opt_out(scope, internal, opted_out=False)
        for lst in lists:
            _rejoin(scope, lst, internal)
    elif not lists or any(lst.is_default for lst in lists):
        _set_global_opt_out(scope, internal, opted_out=True)
    for lst in lists if action == "unsubscribe" else []:
        for chunk in _chunks(internal):
            scope.session.execute(
                update(Subscription)
                .where(
                    Subscription.subscription_list_id == lst.id,
                    Subscription.subscriber_id.in_(chunk),
                    Subscription.unsubscribed_at.is_(None),
                )
                .values(unsubscribed_at=now, updated_at=now)
            )
    scope.session.expire_all()
    by_id = {
        s.id: s
        for chunk in _chunks(internal)
        for s in scope.session.scalars(scope.select(Subscriber).where(Subscriber.id.in_(chunk)))
    }
    return [by_id[sid] for sid in internal]


def _set_global_opt_out(
    scope: AccountScope, subscriber_ids: Sequence[int], *, opted_out: bool
) -> None:
    now = clock.now()
    for chunk in _chunks(subscriber_ids):
        scope.session.execute(
            update(Subscriber)
            .where(
                Subscriber.account_id == scope.account_id,
                Subscriber.id.in_(chunk),
                Subscriber.opted_out_on.is_(None)
                if opted_out
                else Subscriber.opted_out_on.is_not(None),
            )
            .values(opted_out_on=now if opted_out else None, updated_at=now)
        )


@dataclass(frozen=True)
class BulkSelectionRequest:
    list_id: str
    search: str
    filters: list[list[dict[str, Any]]]
    except_ids: list[str]


def start_bulk_change(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    request: BulkSelectionRequest,
    *,
    dynamic: bool,
) -> Job:
    """Queue a job that opts every selected subscriber in or out globally."""
    if dynamic:
        segment = referenced_dynamic_list(scope, request.list_id, "from_subscription_list_id")
        selection = segment_selection(segment)
    else:
        lst = referenced_list(scope, request.list_id, "from_subscription_list_id")
        selection = Selection(
            list_id=None if lst.is_default else lst.id,
            search=request.search,
            filters=request.filters,
        )
    selection = replace(
        selection, except_ids=_resolve_subscribers(scope, request.except_ids, "except_ids")
    )
    payload = {
        "action": action,
        "list_id": selection.list_id,
        "search": selection.search,
        "filters": [list(group) for group in selection.filters],
        "except_ids": list(selection.except_ids),
    }
    # Counting now also rejects an unknown filter field before anything is queued.
    total = count_selected(scope, selection)
    return create_job(scope.session, scope.account_id, BULK_SUBSCRIPTION_JOB, payload, total=total)


@job_step(BULK_SUBSCRIPTION_JOB)
def _bulk_change_batch(session: Session, job: Job, batch_size: int) -> StepResult:
    scope = AccountScope(session, job.account_id)
    payload = job.payload
    selection = Selection(
        list_id=payload["list_id"],
        search=payload["search"],
        filters=payload["filters"],
        except_ids=payload["except_ids"],
    )
    ids = selected_ids_after(session, scope, selection, job.cursor, batch_size)
    _set_global_opt_out(scope, ids, opted_out=payload["action"] == "unsubscribe")
    return StepResult(
        done=len(ids),
        failed=0,
        cursor=ids[-1] if ids else job.cursor,
        finished=len(ids) < batch_size,
    )


# --- dynamic lists ---------------------------------------------------------------------------


def referenced_dynamic_list(scope: AccountScope, list_id: str, field: str) -> DynamicList:
    found = _by_public_id(scope, DynamicList, list_id)
    if found is None:
        raise Invalid(f"{field}: no dynamic list {list_id} in this account", field=field)
    return found


def get_dynamic_list(scope: AccountScope, list_id: str) -> DynamicList:
    found = _by_public_id(scope, DynamicList, list_id)
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
    with _unique(scope, check_name):
        scope.session.add(segment)
    dynamic_list_count(scope, segment)  # names an unknown filter field before saving
    return segment


def delete_dynamic_list(scope: AccountScope, list_id: str) -> None:
    scope.session.delete(get_dynamic_list(scope, list_id))
    scope.session.flush()


def list_uuid(scope: AccountScope, internal_id: int | None) -> str | None:
    if internal_id is None:
        return None
    lst = scope.by_id(SubscriptionList, internal_id)
    return lst.uuid if lst else None
