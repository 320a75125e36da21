"""Subscriptions: one subscriber on one list. Subscribing and unsubscribing, one by one or a
whole selection in a background job."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import AccountScope
from dripstone.errors import Conflict, Invalid, NotFound
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.subscribers import counts, schemas
from dripstone.subscribers.lists import referenced_list
from dripstone.subscribers.membership import rejoin, set_global_opt_out
from dripstone.subscribers.models import (
    DynamicList,
    Subscriber,
    Subscription,
    SubscriptionList,
)
from dripstone.subscribers.rows import chunks
from dripstone.subscribers.segments import referenced_dynamic_list, segment_selection
from dripstone.subscribers.selection import (
    Selection,
    count_selected,
    selected_ids_after,
)
from dripstone.subscribers.service import resolve_subscribers
from dripstone.wire import is_uuid

BULK_SUBSCRIPTION_JOB = "bulk_subscription"


def list_subscriptions(scope: AccountScope) -> list[schemas.SubscriptionRecord]:
    return _records(scope, scope.select(Subscription).order_by(Subscription.id))


def get_subscription(scope: AccountScope, subscription_id: str) -> schemas.SubscriptionRecord:
    stmt = scope.select(Subscription).where(Subscription.uuid == subscription_id)
    records = _records(scope, stmt) if is_uuid(subscription_id) else []
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
    rejoin(scope, lst, [subscriber.id])
    return _records(scope, stmt)[0]


def cancel_subscription(scope: AccountScope, subscription_id: str) -> schemas.SubscriptionRecord:
    stmt = scope.select(Subscription).where(Subscription.uuid == subscription_id)
    subscription = scope.session.scalars(stmt).first() if is_uuid(subscription_id) else None
    if subscription is None:
        raise NotFound(f"subscription {subscription_id} not found", field="id")
    if subscription.unsubscribed_at is None:
        with counts.changing(scope.session, scope.account_id, [subscription.subscriber_id]):
            subscription.unsubscribed_at = clock.now()
    return _records(scope, stmt)[0]


def change_subscriptions(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    subscriber_ids: Sequence[str],
    list_ids: Sequence[str] | None,
) -> list[Subscriber]:
    """Opt subscribers in or out: of the given lists, or globally without lists.
    Subscribing always lifts a global opt-out."""
    internal = resolve_subscribers(scope, subscriber_ids, "subscriber_ids")
    lists = [referenced_list(scope, lid, "subscription_list_ids") for lid in list_ids or []]
    now = clock.now()
    if action == "subscribe":
        set_global_opt_out(scope, internal, opted_out=False)
        for lst in lists:
            rejoin(scope, lst, internal)
    elif not lists or any(lst.is_default for lst in lists):
        set_global_opt_out(scope, internal, opted_out=True)
    for lst in lists if action == "unsubscribe" else []:
        for chunk in chunks(internal):
            with counts.changing(scope.session, scope.account_id, chunk):
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
        for chunk in chunks(internal)
        for s in scope.session.scalars(
            select(Subscriber).where(scope.owns(Subscriber), Subscriber.id.in_(chunk))
        )
    }
    return [by_id[sid] for sid in internal]


@dataclass(frozen=True)
class BulkSelectionRequest:
    list_id: str
    search: str
    filters: list[list[dict[str, Any]]]
    except_ids: list[str]


def requested_selection(
    scope: AccountScope, request: BulkSelectionRequest, *, dynamic: bool
) -> Selection:
    """The subscribers a select-all request names: a list (or a dynamic list's members)
    narrowed by search and filters, less the excepted ids (422 naming what is unknown)."""
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
    return replace(
        selection, except_ids=resolve_subscribers(scope, request.except_ids, "except_ids")
    )


def selection_payload(selection: Selection) -> dict[str, Any]:
    """A selection as a job's payload keeps it (internal ids; JSON only)."""
    return {
        "list_id": selection.list_id,
        "search": selection.search,
        "filters": [list(group) for group in selection.filters],
        "except_ids": list(selection.except_ids),
    }


def payload_selection(payload: dict[str, Any]) -> Selection:
    """The selection a job's payload keeps (see `selection_payload`)."""
    return Selection(
        list_id=payload["list_id"],
        search=payload["search"],
        filters=payload["filters"],
        except_ids=payload["except_ids"],
    )


def start_bulk_change(
    scope: AccountScope,
    action: Literal["subscribe", "unsubscribe"],
    request: BulkSelectionRequest,
    *,
    dynamic: bool,
) -> Job:
    """Queue a job that opts every selected subscriber in or out globally."""
    selection = requested_selection(scope, request, dynamic=dynamic)
    payload = {"action": action, **selection_payload(selection)}
    # Counting now also rejects an unknown filter field before anything is queued.
    total = count_selected(scope, selection)
    return create_job(scope.session, scope.account_id, BULK_SUBSCRIPTION_JOB, payload, total=total)


@job_step(BULK_SUBSCRIPTION_JOB)
def _bulk_change_batch(session: Session, job: Job, batch_size: int) -> StepResult:
    scope = AccountScope(session, job.account_id)
    selection = payload_selection(job.payload)
    ids = selected_ids_after(session, scope, selection, job.cursor, batch_size)
    set_global_opt_out(scope, ids, opted_out=job.payload["action"] == "unsubscribe")
    return StepResult(
        done=len(ids),
        failed=0,
        cursor=ids[-1] if ids else job.cursor,
        finished=len(ids) < batch_size,
    )
