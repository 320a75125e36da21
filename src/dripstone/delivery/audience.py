"""Who may be sent to. One answer for every path (campaign sends, drip steps, test emails,
previews): an account never sends to an address it suppressed (a hard bounce) or whose
subscriber opted out of all mail, and a message to list members is skipped when they left
the list or were deleted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    exists,
    not_,
    select,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dripstone import clock
from dripstone.delivery.kinds import DeliveryKind
from dripstone.delivery.models import Suppression
from dripstone.subscribers import counts
from dripstone.subscribers.models import (
    Subscriber,
    Subscription,
)


class Unsendable(StrEnum):
    """Why an account may not send to an address."""

    SUPPRESSED = "suppressed"  # the address hard-bounced for this account
    OPTED_OUT = "opted_out"  # this account's subscriber with the address opted out of all mail


def unsendable(
    connection: Connection | Session, addresses: Iterable[tuple[int, str]]
) -> dict[tuple[int, str], Unsendable]:
    """May this account send to this address? The one answer every path (blast, drip, test,
    preview) asks for: of the (account, address) pairs, those the account may not send to,
    with why. Cross-account on purpose (a batch holds many accounts' messages): every
    lookup is keyed by (account, address), so one account's suppressions and opt-outs
    never stop another account's mail. `reachable_subscriber` is the same rule as SQL over
    subscribers, for set-based selections."""
    pairs = set(addresses)
    if not pairs:
        return {}
    accounts = {account_id for account_id, _ in pairs}
    emails = {email for _, email in pairs}
    found: dict[tuple[int, str], Unsendable] = {}
    opted_out = connection.execute(
        select(Subscriber.account_id, Subscriber.email).where(
            Subscriber.account_id.in_(accounts),
            Subscriber.email.in_(emails),
            Subscriber.opted_out_on.is_not(None),
        )
    )
    for account_id, email in opted_out:
        if email is not None and (account_id, email) in pairs:
            found[(account_id, email)] = Unsendable.OPTED_OUT
    suppressed = connection.execute(
        select(Suppression.account_id, Suppression.email).where(
            Suppression.account_id.in_(accounts), Suppression.email.in_(emails)
        )
    )
    for account_id, email in suppressed:
        if (account_id, email) in pairs:
            found[(account_id, email)] = Unsendable.SUPPRESSED
    return found


@dataclass(frozen=True)
class Suppressed:
    """An address an account must not send to again, and why."""

    account_id: int
    email: str
    reason: str
    delivery_id: int | None = None


def suppress(connection: Connection, addresses: Sequence[Suppressed]) -> None:
    """Suppress the addresses (those already suppressed stay as they were). A send no longer
    reaches their subscribers, so the lists' kept counts change with them, once per account."""
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    by_account: dict[int, list[Suppressed]] = {}
    for address in addresses:
        by_account.setdefault(address.account_id, []).append(address)
    for account_id, suppressed in sorted(by_account.items()):
        emails = sorted({s.email for s in suppressed})
        subscriber_ids = list(
            connection.scalars(
                select(Subscriber.id).where(
                    Subscriber.account_id == account_id, Subscriber.email.in_(emails)
                )
            )
        )
        with counts.changing(connection, account_id, subscriber_ids):
            connection.execute(
                insert(Suppression).on_conflict_do_nothing(index_elements=["account_id", "email"]),
                [
                    {
                        "account_id": s.account_id,
                        "email": s.email,
                        "reason": s.reason,
                        "delivery_id": s.delivery_id,
                        "created_at": clock.now(),
                    }
                    for s in suppressed
                ],
            )


def not_suppressed(account_id: Any, email: Any) -> Any:
    """SQL: `email` is not on the account's suppression list."""
    return not_(exists().where(Suppression.account_id == account_id, Suppression.email == email))


@counts.count_reachable_with
def reachable_subscriber() -> Any:
    """SQL over Subscriber: has an address, has not opted out, is not suppressed (the rule
    of `unsendable`, for selecting recipients set-based)."""
    return and_(
        Subscriber.email.is_not(None),
        Subscriber.opted_out_on.is_(None),
        not_suppressed(Subscriber.account_id, Subscriber.email),
    )


def skip_reason(row: Any, left: set[tuple[int, int]], blocked: Unsendable | None) -> str | None:
    if blocked is Unsendable.SUPPRESSED:
        return "suppressed: the address bounced before"
    if not DeliveryKind(row.kind).to_members:
        # Test and preview rows name an address, not a subscriber, and may have been
        # queued before the opt-out.
        if blocked is Unsendable.OPTED_OUT:
            return "the address opted out of all mail"
        return None
    if row.subscriber_id is None or row.subscriber_email is None:
        return "the subscriber was deleted"
    if row.opted_out_on is not None or blocked is Unsendable.OPTED_OUT:
        return "the subscriber opted out of all mail"
    if (row.subscriber_id, row.subscription_list_id) in left:
        return "the subscriber left the list"
    return None


def unsubscribed_pairs(connection: Connection, rows: Sequence[Any]) -> set[tuple[int, int]]:
    """(subscriber, list) pairs among `rows` where the subscriber is no longer on the list."""
    pairs = {
        (r.subscriber_id, r.subscription_list_id)
        for r in rows
        if DeliveryKind(r.kind).to_members
        and r.subscriber_id is not None
        and r.subscription_list_id is not None
    }
    if not pairs:
        return set()
    members = connection.execute(
        select(Subscription.subscriber_id, Subscription.subscription_list_id).where(
            Subscription.subscriber_id.in_([p[0] for p in pairs]),
            Subscription.subscription_list_id.in_({p[1] for p in pairs}),
            Subscription.unsubscribed_at.is_(None),
        )
    )
    on_list = {(subscriber_id, list_id) for subscriber_id, list_id in members}
    return {pair for pair in pairs if pair not in on_list}
