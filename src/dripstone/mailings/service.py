"""Campaign mailings and their sends: save, test, send now or later, cancel, report."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, case, delete, func, insert, select, update
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.db import (
    AccountScope,
    locked,
    matches_regex,
    ordering,
    searched,
)
from dripstone.delivery import audience, outcomes, pipeline
from dripstone.delivery import models as delivery_models
from dripstone.delivery.checks import check_templates
from dripstone.delivery.footer import derive_text, with_unsubscribe_footer
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import Delivery, DeliveryStatus, due_delivery, select_due_deliveries
from dripstone.delivery.prepare import PreparedMailing
from dripstone.delivery.signing import TrackingTokens
from dripstone.delivery.template import TemplateError
from dripstone.errors import Invalid, NotFound
from dripstone.jobs.models import Job, JobState
from dripstone.jobs.service import (
    ACTIVE_STATES,
    JobError,
    StepResult,
    cancel_job,
    create_job,
    job_step,
)
from dripstone.mailings import schemas
from dripstone.mailings.models import CampaignMailing, CampaignMailingSend, SendState
from dripstone.references import Uses
from dripstone.subscribers import counts as list_counts
from dripstone.subscribers.lists import default_list, referenced_list
from dripstone.subscribers.models import DynamicList, Subscriber, SubscriptionList
from dripstone.subscribers.segments import referenced_dynamic_list, segment_selection
from dripstone.subscribers.selection import Selection, selected_list, selection_condition
from dripstone.wire import is_uuid

SEND_JOB = "campaign_send"
# How often a send that has queued every message looks at how its deliveries are doing.
PROGRESS_SECONDS = 2.0
_SAMPLE_TOKENS = TrackingTokens("sample-secret-key-used-only-for-checking", "https://x.invalid")


class MailingRefused(Invalid):
    """A mailing that cannot be saved; `errors` are the messages the 200-errors quirk shows."""

    def __init__(self, errors: list[str], field: str) -> None:
        super().__init__("; ".join(errors), field=field)
        self.errors = errors

    def by_field(self) -> dict[str, str]:
        """Field name -> its messages, each message filed under the field it starts with."""
        found: dict[str, list[str]] = {}
        for error in self.errors:
            found.setdefault(_first_field([error]), []).append(error)
        return {name: "; ".join(messages) for name, messages in found.items()}


# --- mailings ----------------------------------------------------------------------------------


ORDERABLE = {
    "subject": CampaignMailing.subject,
    "created_at": CampaignMailing.created_at,
    "updated_at": CampaignMailing.updated_at,
    "template_type": CampaignMailing.template_type,
}


def list_mailings(
    scope: AccountScope,
    *,
    search: str | None,
    template_type: str | None,
    order_by: str | None,
    order: Literal["asc", "desc"],
    items: int,
    page: int,
    paginate: bool,
) -> list[tuple[CampaignMailing, schemas.MailingListAttributes]]:
    """The account's mailings with their delivery counts, filtered and paged."""
    stmt = scope.select(CampaignMailing)
    if search:
        stmt = stmt.where(matches_regex(scope.session, CampaignMailing.subject, search))
    if template_type:
        stmt = stmt.where(CampaignMailing.template_type == template_type)
    column = ORDERABLE.get(order_by or "", CampaignMailing.id)
    stmt = stmt.order_by(*ordering(column, CampaignMailing.id, order))
    if paginate:
        stmt = stmt.limit(items).offset((page - 1) * items)
    mailings = searched(scope.session, stmt) if search else list(scope.session.scalars(stmt))
    counts = mailing_counts(scope.session, scope.account_id, [m.id for m in mailings])
    return [(m, _list_attributes(m, counts.get(m.id, {}))) for m in mailings]


def _list_attributes(m: CampaignMailing, counts: dict[str, int]) -> schemas.MailingListAttributes:
    return schemas.MailingListAttributes(
        subject=m.subject,
        default_subject=m.default_subject,
        template_type=m.template_type,
        created_at=m.created_at,
        updated_at=m.updated_at,
        sent_count=counts.get("sent", 0),
        delivered_count=counts.get("delivered", 0),
        viewed_count=counts.get("opened", 0),
        clicked_count=counts.get("clicked", 0),
        bounced_count=counts.get("bounced", 0),
        unsubscribed_count=counts.get("unsubscribed", 0),
    )


# Sends' and mailings' numbers (sent, delivered, bounced, opened, clicked, unsubscribed) are
# the analytics domain's counters, above this one, so it registers how they are read.
Counts = Callable[[Session, int, Sequence[int]], dict[int, dict[str, int]]]
_send_counters: Counts | None = None
_mailing_counters: Counts | None = None


def counts_sends_with(count: Counts) -> Counts:
    """Register how sends' numbers are read (done once, by the analytics domain)."""
    global _send_counters
    _send_counters = count
    return count


def counts_mailings_with(count: Counts) -> Counts:
    """Register how mailings' numbers are read (done once, by the analytics domain)."""
    global _mailing_counters
    _mailing_counters = count
    return count


def _counted(count: Counts | None, session: Session, account_id: int, ids: Sequence[int]) -> Any:
    if count is None:
        raise RuntimeError("no counter of sends registered: import dripstone.tasks first")
    return count(session, account_id, ids)


def _count_if(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def mailing_counts(
    session: Session, account_id: int, mailing_ids: Sequence[int]
) -> dict[int, dict[str, int]]:
    """Per mailing: its campaign sends' sent, delivered, opened, clicked, bounced and
    unsubscribed (the analytics counters)."""
    if not mailing_ids:
        return {}
    found: dict[int, dict[str, int]] = _counted(_mailing_counters, session, account_id, mailing_ids)
    return found


def send_counts(
    session: Session, account_id: int, send_ids: Sequence[int]
) -> dict[int, schemas.SendCounts]:
    """Per send: how its deliveries stand. Progress (recipients, pending, skipped, failed) is
    counted from the deliveries' statuses; what the messages came to, from the counters."""
    if not send_ids:
        return {}
    progress = session.execute(
        select(
            Delivery.send_id,
            func.count().label("recipients"),
            _count_if(Delivery.status == DeliveryStatus.SKIPPED).label("skipped"),
            _count_if(Delivery.status == DeliveryStatus.FAILED).label("failed"),
            _count_if(Delivery.status.not_in(delivery_models.FINAL)).label("pending"),
        )
        .where(Delivery.kind == DeliveryKind.CAMPAIGN, Delivery.send_id.in_(send_ids))
        .group_by(Delivery.send_id)
    )
    counted = _counted(_send_counters, session, account_id, send_ids)
    return {
        row.send_id: schemas.SendCounts.model_validate(
            {
                "recipients": row.recipients,
                "skipped": row.skipped,
                "failed": row.failed,
                "pending": row.pending,
                **{k: v for k, v in counted.get(row.send_id, {}).items() if k in _SEND_FIELDS},
            }
        )
        for row in progress
    }


_SEND_FIELDS = set(schemas.SendCounts.model_fields)


def get_mailing(scope: AccountScope, mailing_id: str) -> CampaignMailing:
    found = scope.by_uuid(CampaignMailing, mailing_id)
    if found is None:
        raise NotFound(f"campaign mailing {mailing_id} not found", field="id")
    return found


def referenced_mailing(scope: AccountScope, mailing_id: str, field: str) -> CampaignMailing:
    found = scope.by_uuid(CampaignMailing, mailing_id)
    if found is None:
        raise Invalid(f"{field}: no campaign mailing {mailing_id} in this account", field=field)
    return found


def text_part(mailing: CampaignMailing) -> str | None:
    """The plain-text part as sent: the one written, else one derived from the HTML."""
    if mailing.text_part is not None or mailing.html_part is None:
        return mailing.text_part
    return derive_text(mailing.html_part)


def save_mailing(
    scope: AccountScope, fields: schemas.MailingFields, current: CampaignMailing | None
) -> CampaignMailing:
    """Create (current None) or change a mailing. Refuses with every problem at once, before
    writing anything: a missing or taken subject, templates that do not render."""
    sent = fields.model_fields_set
    subject = fields.subject if "subject" in sent else (current.subject if current else None)
    html = fields.html_part if "html_part" in sent else (current.html_part if current else None)
    text = fields.text_part if "text_part" in sent else (current.text_part if current else None)
    errors: list[str] = []
    if not subject:
        errors.append("subject: is required")
    elif _subject_taken(scope, subject, current):
        errors.append(f"subject: another campaign mailing already has the subject {subject!r}")
    if html is None and text is None:
        errors.append("html_part: a mailing needs an html_part or a text_part")
    else:
        errors += check_templates(subject or "subject", html, text)
    if errors:
        raise MailingRefused(errors, field=_first_field(errors))
    mailing = current or CampaignMailing(account_id=scope.account_id)
    mailing.subject = subject or ""
    mailing.html_part = with_unsubscribe_footer(html) if html is not None else None
    mailing.text_part = text
    for name in ("default_subject", "from_name", "reply_to", "form_data", "image_data"):
        if name in sent:
            setattr(mailing, name, getattr(fields, name))
    if "from_" in sent:
        mailing.from_email = fields.from_
    if fields.template_type is not None:
        mailing.template_type = fields.template_type
    elif current is None:
        mailing.template_type = "quill"
    if current is None:
        scope.session.add(mailing)
    mailing.updated_at = clock.now()
    scope.session.flush()
    return mailing


def _first_field(errors: list[str]) -> str:
    match = re.match(r"(\w+)", errors[0])
    return match.group(1) if match else "campaign_mailing"


def _subject_taken(scope: AccountScope, subject: str, current: CampaignMailing | None) -> bool:
    stmt = scope.select(CampaignMailing, CampaignMailing.id).where(
        CampaignMailing.subject == subject
    )
    if current is not None:
        stmt = stmt.where(CampaignMailing.id != current.id)
    return scope.session.execute(stmt.limit(1)).first() is not None


# Domains whose rows point at a mailing (drip campaigns' email steps) register here.
MAILING_USES: Uses[CampaignMailing] = Uses()


def bulk_delete_mailings(scope: AccountScope, mailing_ids: Sequence[str]) -> None:
    """Delete mailings with their sends and deliveries. An unknown id, or a mailing that a
    drip campaign (deleted ones aside) sends, is a 422 and nothing is deleted."""
    found = []
    for index, mailing_id in enumerate(mailing_ids):
        mailing = scope.by_uuid(CampaignMailing, mailing_id)
        if mailing is None:
            raise Invalid(
                f"campaign_mailing_ids[{index}]: no campaign mailing {mailing_id} in this account",
                field=f"campaign_mailing_ids[{index}]",
            )
        found.append(mailing)
    if not found:
        return
    # Held until the end, so that no drip campaign saved meanwhile starts sending one of
    # them (saving a graph holds its mailings shared); in id order, as saving takes them.
    scope.session.execute(
        locked(
            scope.select(CampaignMailing, CampaignMailing.id)
            .where(CampaignMailing.id.in_({m.id for m in found}))
            .order_by(CampaignMailing.id),
            "change",
        )
    )
    MAILING_USES.refuse_delete_if_used(
        scope, found, [f"campaign_mailing_ids[{index}]" for index in range(len(found))]
    )
    found_ids = [m.id for m in found]
    # Sends in flight stop here: their jobs find no send and deliveries go with the rows.
    jobs = scope.select(CampaignMailingSend, CampaignMailingSend.job_id).where(
        CampaignMailingSend.campaign_mailing_id.in_(found_ids)
    )
    scope.session.execute(
        update(Job)
        .where(Job.id.in_(jobs.scalar_subquery()), Job.state.in_(ACTIVE_STATES))
        .values(state=JobState.CANCELLED, finished_at=clock.now(), lease_token=None)
    )
    scope.session.execute(delete(Delivery).where(Delivery.campaign_mailing_id.in_(found_ids)))
    scope.session.execute(
        delete(CampaignMailingSend).where(CampaignMailingSend.campaign_mailing_id.in_(found_ids))
    )
    scope.session.execute(delete(CampaignMailing).where(CampaignMailing.id.in_(found_ids)))


def send_test_email(scope: AccountScope, mailing_id: str, to_email: str) -> None:
    """Queue one untracked copy of the mailing to `to_email`, subject prefixed `[Test]`."""
    mailing = get_mailing(scope, mailing_id)
    subscriber = _refuse_unreachable(scope, to_email, "to_email")
    now = clock.now()
    scope.session.add(
        Delivery(
            **due_delivery(
                account_id=scope.account_id,
                kind=DeliveryKind.TEST,
                campaign_mailing_id=mailing.id,
                email=to_email,
                tracked=False,
                now=now,
                subscriber_id=subscriber.id if subscriber is not None else None,
            )
        )
    )


def _refuse_unreachable(scope: AccountScope, email: str, field: str) -> Subscriber | None:
    """The subscriber with this address, if any; 422 if the address may not be mailed."""
    blocked = audience.unsendable(scope.session, [(scope.account_id, email)])
    if blocked.get((scope.account_id, email)) is audience.Unsendable.SUPPRESSED:
        raise Invalid(f"{field}: {email} bounced before and is suppressed", field=field)
    if blocked.get((scope.account_id, email)) is audience.Unsendable.OPTED_OUT:
        raise Invalid(f"{field}: {email} has opted out of all mail", field=field)
    found: Subscriber | None = scope.session.scalars(
        scope.select(Subscriber).where(Subscriber.email == email)
    ).one_or_none()
    return found


# --- sends -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendRequest:
    """A send as asked for, with ids still public."""

    sender_email: str
    subscription_list_id: str | None
    dynamic_list_id: str | None
    recipient_emails: Sequence[str]
    customer_name: str | None
    from_email: str | None
    from_name: str | None
    subject: str | None
    send_at: datetime | None = None


def _refusals(
    scope: AccountScope, mailing: CampaignMailing, request: SendRequest
) -> tuple[SubscriptionList | None, DynamicList | None]:
    """The list or segment a send goes to; 422 for everything that would stop it."""
    lst, segment = _target(scope, request)
    if request.send_at is not None and request.send_at <= clock.now():
        raise Invalid("send_at: must be in the future", field="send_at")
    problems = check_templates(
        request.subject or mailing.subject, mailing.html_part, mailing.text_part
    )
    if problems:
        field = "subject" if request.subject and problems[0].startswith("subject") else None
        raise Invalid(
            "the campaign mailing cannot be sent: " + "; ".join(problems),
            field=field or "campaign_mailing_id",
        )
    return lst, segment


def check_send(scope: AccountScope, mailing: CampaignMailing, request: SendRequest) -> int:
    """What start_send would refuse (422), refused the same way without writing anything;
    else how many subscribers the send would reach if it began now (the rule it begins with)."""
    lst, segment = _refusals(scope, mailing, request)
    if segment is not None:
        selection = segment_selection(segment)
    else:
        selection = Selection(list_id=None if lst is None or lst.is_default else lst.id)
    return _audience_size(scope, selection)


def _audience_size(scope: AccountScope, selection: Selection) -> int:
    """Who a send reaches: for a whole list, its kept count (one row); a segment's search
    and filters are counted here."""
    lst = selected_list(scope, selection) if selection.whole_list else None
    if lst is not None:
        return list_counts.reachable(scope.session, lst)
    return (
        scope.session.scalar(
            select(func.count())
            .select_from(Subscriber)
            .where(selection_condition(scope, selection), audience.reachable_subscriber())
        )
        or 0
    )


def start_send(
    scope: AccountScope, mailing: CampaignMailing, request: SendRequest
) -> CampaignMailingSend:
    """Record a send and queue its job: now, or at `send_at`. Refuses (422) an unknown list,
    a time in the past, or a mailing whose templates do not render, before anything is sent."""
    lst, segment = _refusals(scope, mailing, request)
    now = clock.now()
    subject = request.subject or mailing.subject
    from_email = request.from_email or mailing.from_email or pipeline.default_from_email()
    job = create_job(scope.session, scope.account_id, SEND_JOB, {}, not_before=request.send_at)
    send = CampaignMailingSend(
        account_id=scope.account_id,
        campaign_mailing_id=mailing.id,
        subscription_list_id=lst.id if lst is not None else None,
        dynamic_list_id=segment.id if segment is not None else None,
        list_name=segment.name if segment is not None else (lst.name if lst else ""),
        sender_email=request.sender_email,
        customer_name=request.customer_name,
        from_email=from_email,
        from_name=request.from_name or mailing.from_name,
        reply_to=mailing.reply_to,
        subject=subject,
        recipient_emails=list(request.recipient_emails),
        job_id=job.id,
        state=SendState.SCHEDULED,
        send_at=request.send_at,
        created_at=now,
    )
    scope.session.add(send)
    scope.session.flush()
    return send


def _target(
    scope: AccountScope, request: SendRequest
) -> tuple[SubscriptionList | None, DynamicList | None]:
    if request.dynamic_list_id is not None:
        return None, referenced_dynamic_list(scope, request.dynamic_list_id, "dynamic_list_id")
    if request.subscription_list_id is None:
        raise Invalid(
            "subscription_list_id: is required (or dynamic_list_id)", field="subscription_list_id"
        )
    return referenced_list(scope, request.subscription_list_id, "subscription_list_id"), None


def mailing_by_subject(scope: AccountScope, subject: str | None) -> CampaignMailing:
    """The mailing a schedule names by subject (subjects are unique in an account)."""
    if not subject:
        raise Invalid("subject: is required when campaign_mailing_id is not given", field="subject")
    found: CampaignMailing | None = scope.session.scalars(
        scope.select(CampaignMailing).where(CampaignMailing.subject == subject)
    ).one_or_none()
    if found is None:
        raise Invalid(f"subject: no campaign mailing has the subject {subject!r}", field="subject")
    return found


def cancel_schedule(scope: AccountScope, jid: str) -> CampaignMailingSend:
    """Cancel a scheduled send that has not begun (404 unknown, 422 already begun)."""
    send: CampaignMailingSend | None = None
    if is_uuid(jid):  # a jid is a UUID; other text names nothing
        send = scope.session.scalars(
            scope.select(CampaignMailingSend).where(CampaignMailingSend.job_id == jid.lower())
        ).one_or_none()
    if send is None:
        raise NotFound(f"no scheduled send has the jid {jid}", field="jid")
    job = scope.session.scalars(scope.select(Job).where(Job.id == send.job_id)).one_or_none()
    if send.state != SendState.SCHEDULED or job is None or not cancel_job(scope.session, job):
        raise Invalid(f"the send {jid} has already begun ({send.state}); it cannot be cancelled")
    send.state = SendState.CANCELLED
    send.finished_at = clock.now()
    return send


def list_sends(scope: AccountScope, *, items: int, page: int) -> list[CampaignMailingSend]:
    stmt = (
        scope.select(CampaignMailingSend)
        .order_by(CampaignMailingSend.id.desc())
        .limit(items)
        .offset((page - 1) * items)
    )
    return list(scope.session.scalars(stmt))


def sends_of(
    scope: AccountScope, mailing: CampaignMailing, items: int
) -> list[CampaignMailingSend]:
    """The mailing's latest sends, newest first."""
    stmt = (
        scope.select(CampaignMailingSend)
        .where(CampaignMailingSend.campaign_mailing_id == mailing.id)
        .order_by(CampaignMailingSend.id.desc())
        .limit(items)
    )
    return list(scope.session.scalars(stmt))


def last_sends(scope: AccountScope, mailing_ids: Sequence[int]) -> dict[int, CampaignMailingSend]:
    """Per mailing among `mailing_ids`: its latest send (one query for them all)."""
    if not mailing_ids:
        return {}
    latest = (
        scope.select(CampaignMailingSend, func.max(CampaignMailingSend.id))
        .where(CampaignMailingSend.campaign_mailing_id.in_(mailing_ids))
        .group_by(CampaignMailingSend.campaign_mailing_id)
    )
    sends = scope.session.scalars(
        scope.select(CampaignMailingSend).where(
            CampaignMailingSend.id.in_(latest.scalar_subquery())
        )
    )
    return {send.campaign_mailing_id: send for send in sends}


def mailings_page(scope: AccountScope, *, before: str | None, items: int) -> list[CampaignMailing]:
    """A page of the account's mailings, newest first, after the mailing `before` (keyset:
    every page costs the same however deep)."""
    stmt = scope.select(CampaignMailing).order_by(CampaignMailing.id.desc()).limit(items)
    if before is not None and is_uuid(before):
        found = scope.by_uuid(CampaignMailing, before)
        if found is not None:
            stmt = stmt.where(CampaignMailing.id < found.id)
    return list(scope.session.scalars(stmt))


def sends_before(
    scope: AccountScope, before: str | None, items: int
) -> tuple[list[CampaignMailingSend], str | None]:
    """Up to `items` of the account's sends, newest first, older than the send whose public
    id is `before` (None, or an id of no send of the account: from the newest); and the id
    to ask for the next page with (None: this was the last). Keyset paging on the
    (account, id) index, so every page costs the same."""
    stmt = scope.select(CampaignMailingSend)
    if before is not None and is_uuid(before):
        older = scope.select(CampaignMailingSend, CampaignMailingSend.id).where(
            CampaignMailingSend.uuid == before.lower()
        )
        found = scope.session.scalar(older)
        if found is not None:
            stmt = stmt.where(CampaignMailingSend.id < found)
    stmt = stmt.order_by(CampaignMailingSend.id.desc()).limit(items + 1)
    sends = list(scope.session.scalars(stmt))
    return sends[:items], (sends[items - 1].uuid if len(sends) > items else None)


def get_send(scope: AccountScope, send_id: str) -> CampaignMailingSend:
    """The account's send with this public id (404 otherwise)."""
    found = scope.by_uuid(CampaignMailingSend, send_id)
    if found is None:
        raise NotFound(f"campaign mailing send {send_id} not found", field="id")
    return found


# --- the send job --------------------------------------------------------------------------------


@job_step(SEND_JOB)
def _send_step(session: Session, job: Job, batch_size: int) -> StepResult:
    """Queue a send's deliveries a batch at a time, then follow them until all are final."""
    scope = AccountScope(session, job.account_id)
    send = session.scalars(
        scope.select(CampaignMailingSend).where(CampaignMailingSend.job_id == job.id)
    ).one_or_none()
    if send is None:
        raise JobError("the send was deleted with its campaign mailing")
    if send.state == SendState.SCHEDULED:
        problem = _begin(scope, send, job)
        return StepResult(done=0, failed=0, cursor=0, finished=False, failed_with=problem)
    if send.state == SendState.QUEUEING:
        return _queue_batch(scope, send, job, batch_size)
    return _follow(scope, send, job)


def _begin(scope: AccountScope, send: CampaignMailingSend, job: Job) -> str | None:
    """Copy the content into the send and count the recipients; or say why it cannot go."""
    mailing = scope.by_id(CampaignMailing, send.campaign_mailing_id)
    if mailing is None:
        raise JobError("the campaign mailing was deleted")
    try:
        PreparedMailing(
            subject=send.subject,
            html=mailing.html_part,
            text=mailing.text_part,
            tokens=_SAMPLE_TOKENS,
        )
    except TemplateError as exc:
        send.state = SendState.FAILED
        send.finished_at = clock.now()
        return f"the campaign mailing cannot be rendered, nothing was sent: {exc}"
    now = clock.now()
    send.html_part = mailing.html_part
    send.text_part = mailing.text_part
    send.state = SendState.QUEUEING
    send.started_at = now
    job.total = _audience_size(scope, _selection(scope, send))
    for email in send.recipient_emails:
        scope.session.add(
            Delivery(
                **due_delivery(
                    account_id=scope.account_id,
                    kind=DeliveryKind.PREVIEW,
                    campaign_mailing_id=send.campaign_mailing_id,
                    email=email,
                    tracked=False,
                    now=now,
                    send_id=send.id,
                )
            )
        )
    return None


def _selection(scope: AccountScope, send: CampaignMailingSend) -> Selection:
    if send.dynamic_list_id is not None:
        segment = scope.by_id(DynamicList, send.dynamic_list_id)
        if segment is None:
            raise JobError("the dynamic list of this send was deleted")
        return segment_selection(segment)
    if send.subscription_list_id is None:
        raise JobError("the subscription list of this send was deleted")
    lst = scope.by_id(SubscriptionList, send.subscription_list_id)
    if lst is None or lst.is_default:
        return Selection(list_id=None)
    return Selection(list_id=lst.id)


def _unsubscribe_list(scope: AccountScope, selection: Selection) -> int | None:
    """The list an unsubscribe from this send leaves: None for All contacts (a global opt-out)."""
    if selection.list_id is None:
        return None
    return selection.list_id if selection.list_id != default_list(scope).id else None


def _queue_batch(
    scope: AccountScope, send: CampaignMailingSend, job: Job, batch_size: int
) -> StepResult:
    """Write the next batch of deliveries with one INSERT ... SELECT, in subscriber id order."""
    selection = _selection(scope, send)
    chosen = and_(
        selection_condition(scope, selection),
        audience.reachable_subscriber(),
        Subscriber.id > job.cursor,
    )
    batch = select(Subscriber.id).where(chosen).order_by(Subscriber.id).limit(batch_size)
    last = scope.session.scalar(select(func.max(batch.subquery().c.id)))
    if last is None:
        send.state = SendState.SENDING
        return StepResult(done=0, failed=0, cursor=job.cursor, finished=False)
    columns = due_delivery(
        account_id=scope.account_id,
        kind=DeliveryKind.CAMPAIGN,
        campaign_mailing_id=send.campaign_mailing_id,
        email=Subscriber.email,
        tracked=True,
        now=clock.now(),
        send_id=send.id,
        subscriber_id=Subscriber.id,
        subscription_list_id=_unsubscribe_list(scope, selection),
    )
    rows = select_due_deliveries(columns).where(chosen, Subscriber.id <= last)
    scope.session.execute(insert(Delivery).from_select(list(columns), rows))
    return StepResult(done=0, failed=0, cursor=last, finished=False)


def _follow(scope: AccountScope, send: CampaignMailingSend, job: Job) -> StepResult:
    """Bring the job's counts up to date; finish once every delivery is final."""
    counts = send_counts(scope.session, scope.account_id, [send.id]).get(send.id)
    if counts is None:
        counts = schemas.SendCounts(**dict.fromkeys(schemas.SendCounts.model_fields, 0))
    finished = counts.recipients - counts.pending
    failed = counts.soft_bounced + counts.hard_bounced + counts.failed
    job.total = max(job.total, counts.recipients)
    result_done, result_failed = finished - job.done, failed - job.failed
    if counts.pending == 0:
        send.state = SendState.SENT
        send.finished_at = clock.now()
        job.error = None
        return StepResult(done=result_done, failed=result_failed, cursor=job.cursor, finished=True)
    job.error = _deferral_note(scope.session, send)
    return StepResult(
        done=result_done,
        failed=result_failed,
        cursor=job.cursor,
        finished=False,
        wait_seconds=PROGRESS_SECONDS,
    )


def _deferral_note(session: Session, send: CampaignMailingSend) -> str | None:
    """What the job record says while messages wait for a retry, such as an SMTP outage."""
    waiting = session.scalar(
        select(func.count()).where(
            Delivery.send_id == send.id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.smtp_reply.is_not(None),
        )
    )
    if not waiting:
        return None
    last = outcomes.last_deferral(session.connection(), Delivery.send_id == send.id)
    reply = f"{last.smtp_code or ''} {last.smtp_reply or ''}".strip() if last else ""
    return (
        f"{waiting} message(s) deferred and waiting to be retried; "
        f"the mail server said: {reply[:300]}"
    )
