"""Subscribers themselves: create, read, update, delete, in bulk too, and the detailed view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope, insert_ignoring_duplicates, new_uuid, ordering
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.subscribers import counts, schemas
from dripstone.subscribers.custom_fields import add_custom_fields, merge_custom
from dripstone.subscribers.lists import default_list, referenced_list
from dripstone.subscribers.membership import join, record_joins
from dripstone.subscribers.models import (
    CustomFieldType,
    CustomFieldValue,
    Subscriber,
    Subscription,
    SubscriptionList,
)
from dripstone.subscribers.rows import chunks, unique_or_clash
from dripstone.subscribers.selection import (
    membership_condition,
    search_condition,
)

ORDERABLE = {
    "first_name": Subscriber.first_name,
    "last_name": Subscriber.last_name,
    "email": Subscriber.email,
    "created_at": Subscriber.created_at,
    "updated_at": Subscriber.updated_at,
}


def get_subscriber(scope: AccountScope, subscriber_id: str) -> Subscriber:
    found = scope.by_uuid(Subscriber, subscriber_id)
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
    by = ordering(ORDERABLE[order_by], Subscriber.id, order)
    # Page through ids alone (an index-only walk), then fetch just the rows of the page.
    page_ids = stmt.order_by(*by).limit(items).offset((page - 1) * items).subquery()
    rows = select(Subscriber).join(page_ids, Subscriber.id == page_ids.c.id).order_by(*by)
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
    with unique_or_clash(
        scope, lambda: _ensure_unique_email(scope, email, None) if email else None
    ):
        scope.session.add(subscriber)
    add_custom_fields(scope, {subscriber.id: merge_custom(fields.custom_fields)})
    counts.added(scope.session, scope.account_id, [subscriber.id])
    record_joins(scope, default_list(scope).id, [subscriber.id])
    if target is not None:
        join(scope, target, [subscriber.id])
    return subscriber


def update_subscriber(
    scope: AccountScope, subscriber_id: str, fields: schemas.SubscriberUpdateFields
) -> Subscriber:
    subscriber = get_subscriber(scope, subscriber_id)
    changes = fields.model_dump(include=fields.model_fields_set)
    if changes.get("email"):
        _ensure_unique_email(scope, changes["email"], subscriber)
    email = changes.get("email")
    # The address decides whether a send reaches the subscriber (none, or one suppressed).
    with (
        counts.changing(scope.session, scope.account_id, [subscriber.id]),
        unique_or_clash(
            scope, lambda: _ensure_unique_email(scope, email, subscriber) if email else None
        ),
    ):
        for name, value in changes.items():
            setattr(subscriber, name, value)
        if subscriber.email is None and subscriber.phone_number is None:
            raise Invalid(
                "subscriber: a subscriber needs an email or a phone_number",
                field="subscriber.email",
            )
    return subscriber


def bulk_create(
    scope: AccountScope, rows: Sequence[schemas.BulkSubscriberRow], list_id: str | None
) -> int:
    """Add new subscribers (and everyone given to the list); returns how many were new.
    Existing subscribers are left as they are, apart from joining the list."""
    target = referenced_list(scope, list_id, "subscription_list_id") if list_id else None
    by_email = {row.email: row for row in rows}
    emails = list(by_email)
    ids: dict[str, int] = {}
    for chunk in chunks(emails):
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
        added[email]: merge_custom(by_email[email].custom_fields)
        for email in added
        if by_email[email].custom_fields
    }
    add_custom_fields(scope, custom)
    counts.added(scope.session, scope.account_id, list(added.values()))
    record_joins(scope, default_list(scope).id, list(added.values()))
    if target is not None:
        join(scope, target, [ids[email] for email in emails if email in ids])
    return len(added)


def bulk_delete(scope: AccountScope, subscriber_ids: Sequence[str], list_id: str | None) -> None:
    """Delete the subscribers, or with a list only take them off that list."""
    internal = resolve_subscribers(scope, subscriber_ids, "subscriber_ids")
    lst = referenced_list(scope, list_id, "subscription_list_id") if list_id else None
    for chunk in chunks(internal):
        if lst is not None and not lst.is_default:
            with counts.changing(scope.session, scope.account_id, chunk):
                scope.session.execute(
                    delete(Subscription).where(
                        Subscription.subscription_list_id == lst.id,
                        Subscription.subscriber_id.in_(chunk),
                    )
                )
        else:
            delete_subscribers(scope, chunk)


def delete_subscribers(scope: AccountScope, internal_ids: Sequence[int]) -> None:
    """Delete these subscribers of the account (their subscriptions and values go with them)."""
    for chunk in chunks(internal_ids):
        with counts.changing(scope.session, scope.account_id, chunk):
            scope.session.execute(
                delete(Subscriber).where(scope.owns(Subscriber), Subscriber.id.in_(chunk))
            )


def resolve_subscribers(scope: AccountScope, public_ids: Sequence[str], field: str) -> list[int]:
    """Internal ids of the given subscribers; 422 naming the first unknown one."""
    wanted = list(dict.fromkeys(public_ids))
    found: dict[str, int] = {}
    for chunk in chunks(wanted):
        rows = scope.session.execute(
            select(Subscriber.uuid, Subscriber.id).where(
                scope.owns(Subscriber), Subscriber.uuid.in_(chunk)
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


# Per subscriber of the account: the counts of `with_stats` statistics. Messages and their
# counters belong to the domains above this one, so the analytics domain registers them here.
MessageCounts = Callable[[Session, int, Sequence[int]], dict[int, dict[str, int]]]
_count_messages: MessageCounts | None = None


def count_messages_with(count: MessageCounts) -> MessageCounts:
    """Register how subscribers' messages are counted (done once, by the analytics domain)."""
    global _count_messages
    _count_messages = count
    return count


def _message_counts(scope: AccountScope, ids: Sequence[int]) -> dict[int, dict[str, int]]:
    if _count_messages is None:
        raise RuntimeError("no message counter registered: import dripstone.tasks first")
    return _count_messages(scope.session, scope.account_id, ids)


def describe(
    scope: AccountScope, subscribers: Sequence[Subscriber], *, with_stats: bool = False
) -> list[schemas.DetailedSubscriberResource]:
    """The detailed form of each subscriber: custom fields, lists and optionally statistics."""
    ids = [s.id for s in subscribers]
    fields: dict[int, list[schemas.CustomFieldValueOut]] = {sid: [] for sid in ids}
    memberships: dict[int, list[schemas.MembershipOut]] = {sid: [] for sid in ids}
    for chunk in chunks(ids):
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
    counts = _message_counts(scope, ids) if with_stats else {}
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
