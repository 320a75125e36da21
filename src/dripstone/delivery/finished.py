"""What other domains learn when deliveries reach a final status.

The read models above this domain (the analytics counters) keep numbers that must move in
the same transaction as a delivery's status. They register a listener here; the dispatcher
tells it, within its own transaction, which deliveries it has just finished and how.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection


@dataclass(frozen=True)
class Finished:
    """A delivery that has just reached a final status (a DeliveryStatus), with what the
    listeners count it by."""

    delivery_id: int
    status: str
    account_id: int
    kind: str  # a DeliveryKind
    send_id: int | None
    campaign_mailing_id: int
    subscriber_id: int | None
    drip_enrollment_id: int | None
    drip_node_id: str | None


Listener = Callable[[Connection, Sequence[Finished]], None]
_listeners: list[Listener] = []


def on_finished(listener: Listener) -> Listener:
    """Register `listener`: called in the transaction that finished the deliveries."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def finished(connection: Connection, deliveries: Sequence[Finished]) -> None:
    """Tell every listener that `deliveries` have just reached their final status."""
    if not deliveries:
        return
    if not _listeners:
        raise RuntimeError("no listener of finished deliveries: import dripstone.tasks first")
    for listener in _listeners:
        listener(connection, deliveries)
