"""Kinds of delivery, and what each one's messages say.

The dispatcher sends deliveries of every kind the same way, but what a message says and
whether it may go now are the business of the domain that made it: the mailings domain for
campaign sends, previews and test emails, the drips domain for drip steps (held while the
campaign is paused, dropped once it is deleted). Each registers an `Outgoing` reader for its
kinds here, so the delivery domain reads none of their tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection


class DeliveryKind(StrEnum):
    CAMPAIGN = "campaign"  # a send to a list or segment
    PREVIEW = "preview"  # a send's copy to a named address
    TEST = "test"  # a mailing's test email to a named address
    DRIP = "drip"  # a drip campaign's email step

    @property
    def to_members(self) -> bool:
        """Whether it goes to list members: the list's opt-outs apply, and it is tracked."""
        return self in (DeliveryKind.CAMPAIGN, DeliveryKind.DRIP)


@dataclass(frozen=True)
class Content:
    """What a message says and who it is from, before merge tags."""

    subject: str
    html: str | None
    text: str | None
    from_email: str | None
    from_name: str | None
    reply_to: str | None


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery, as the domain that made it needs to see it."""

    id: int
    kind: DeliveryKind
    send_id: int | None
    campaign_mailing_id: int
    drip_enrollment_id: int | None
    # A drip email node's overrides of the mailing's subject and sender.
    subject: str | None
    from_email: str | None
    from_name: str | None


@dataclass(frozen=True)
class Outgoing:
    """What the owning domain says of one claimed delivery: its content (with the key under
    which the prepared templates are kept), and whether it waits or is not sent at all."""

    content_key: tuple[Any, ...]
    content: Content
    held: bool = False
    skip_reason: str | None = None


ReadOutgoing = Callable[[Connection, Sequence[Claimed]], dict[int, Outgoing]]
_readers: dict[DeliveryKind, ReadOutgoing] = {}


def reads_outgoing(*kinds: DeliveryKind) -> Callable[[ReadOutgoing], ReadOutgoing]:
    """Register the reader of `kinds`: claimed deliveries in, their Outgoing by delivery id."""

    def register(reader: ReadOutgoing) -> ReadOutgoing:
        for kind in kinds:
            _readers[kind] = reader
        return reader

    return register


def read_outgoing(connection: Connection, claimed: Sequence[Claimed]) -> dict[int, Outgoing]:
    """The Outgoing of every claimed delivery, each kind read by its own domain at once."""
    by_kind: dict[DeliveryKind, list[Claimed]] = {}
    for delivery in claimed:
        by_kind.setdefault(delivery.kind, []).append(delivery)
    found: dict[int, Outgoing] = {}
    for kind, deliveries in by_kind.items():
        reader = _readers.get(kind)
        if reader is None:
            raise RuntimeError(f"no reader registered for {kind} deliveries")
        found.update(reader(connection, deliveries))
    return found
