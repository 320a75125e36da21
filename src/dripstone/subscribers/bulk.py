"""Bulk actions on many subscribers at once: add to a list, delete. A select-all selection
runs as a background job (as opting a selection out does, in `subscriptions`); subscribers
named one by one are changed at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from dripstone.db import AccountScope
from dripstone.errors import Invalid
from dripstone.jobs.models import Job
from dripstone.jobs.service import StepResult, create_job, job_step
from dripstone.subscribers.lists import referenced_list
from dripstone.subscribers.membership import join
from dripstone.subscribers.models import SubscriptionList
from dripstone.subscribers.selection import count_selected, selected_ids_after
from dripstone.subscribers.service import delete_subscribers, resolve_subscribers
from dripstone.subscribers.subscriptions import (
    BulkSelectionRequest,
    payload_selection,
    requested_selection,
    selection_payload,
)

BULK_ADD_TO_LIST_JOB = "bulk_add_to_list"
BULK_DELETE_JOB = "bulk_delete"


def target_list(scope: AccountScope, list_id: str, field: str) -> SubscriptionList:
    """The list subscribers are added to: one of the account's named lists (everyone is on
    the default list already)."""
    lst = referenced_list(scope, list_id, field)
    if lst.is_default:
        raise Invalid(
            f"{field}: everyone is on {lst.name} already; choose another list", field=field
        )
    return lst


def add_to_list(scope: AccountScope, subscriber_ids: Sequence[str], list_id: str) -> int:
    """Add the named subscribers to a list; returns how many joined it. Those who had
    unsubscribed from it stay unsubscribed: adding is not their consent."""
    lst = target_list(scope, list_id, "subscription_list_id")
    return len(join(scope, lst, resolve_subscribers(scope, subscriber_ids, "subscriber_ids")))


def delete(scope: AccountScope, subscriber_ids: Sequence[str]) -> int:
    """Delete the named subscribers; returns how many."""
    internal = resolve_subscribers(scope, subscriber_ids, "subscriber_ids")
    delete_subscribers(scope, internal)
    return len(internal)


def start_add_to_list(
    scope: AccountScope, request: BulkSelectionRequest, list_id: str, *, dynamic: bool
) -> Job:
    """Queue a job that adds every selected subscriber to a list (as `add_to_list`)."""
    lst = target_list(scope, list_id, "subscription_list_id")
    selection = requested_selection(scope, request, dynamic=dynamic)
    payload = {"target_list_id": lst.id, **selection_payload(selection)}
    total = count_selected(scope, selection)
    return create_job(scope.session, scope.account_id, BULK_ADD_TO_LIST_JOB, payload, total=total)


def start_delete(scope: AccountScope, request: BulkSelectionRequest, *, dynamic: bool) -> Job:
    """Queue a job that deletes every selected subscriber."""
    selection = requested_selection(scope, request, dynamic=dynamic)
    total = count_selected(scope, selection)
    return create_job(
        scope.session, scope.account_id, BULK_DELETE_JOB, selection_payload(selection), total=total
    )


def _batch(session: Session, job: Job, batch_size: int) -> tuple[AccountScope, list[int]]:
    scope = AccountScope(session, job.account_id)
    selection = payload_selection(job.payload)
    return scope, selected_ids_after(session, scope, selection, job.cursor, batch_size)


def _step(ids: list[int], job: Job, batch_size: int, **extra: Any) -> StepResult:
    return StepResult(
        done=len(ids),
        failed=0,
        cursor=ids[-1] if ids else job.cursor,
        finished=len(ids) < batch_size,
        **extra,
    )


@job_step(BULK_ADD_TO_LIST_JOB)
def _add_to_list_batch(session: Session, job: Job, batch_size: int) -> StepResult:
    scope, ids = _batch(session, job, batch_size)
    lst = scope.by_id(SubscriptionList, job.payload["target_list_id"])
    if lst is None:
        return _step([], job, batch_size, failed_with="the list was deleted while the job ran")
    join(scope, lst, ids)
    return _step(ids, job, batch_size)


@job_step(BULK_DELETE_JOB)
def _delete_batch(session: Session, job: Job, batch_size: int) -> StepResult:
    scope, ids = _batch(session, job, batch_size)
    delete_subscribers(scope, ids)
    return _step(ids, job, batch_size)
