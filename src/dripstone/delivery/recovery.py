"""Taking back the claims of dispatchers that died: their lease ran out because no heartbeat
renewed it. Rows handed to the transport (`sending`) go out again with their Message-ID: that
is the one window, described in `dispatcher`."""

from __future__ import annotations

import logging

from sqlalchemy import (
    and_,
    select,
    update,
)

from dripstone import clock
from dripstone.db import Database
from dripstone.delivery.models import Delivery, DeliveryStatus

log = logging.getLogger(__name__)


def recover_deliveries(database: Database) -> int:
    """Take back claims whose lease ran out: their dispatcher's heartbeat stopped, so it died.
    Rows it had handed to the transport (`sending`) go out again with their Message-ID; the
    window is described in the module docstring."""
    now = clock.now()
    stale_claims = and_(
        Delivery.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)),
        Delivery.claimed_until < now,
    )
    with database.reader.connect() as connection:
        if connection.execute(select(Delivery.id).where(stale_claims).limit(1)).first() is None:
            return 0
    with database.engine.begin() as connection:
        stale = connection.execute(
            select(Delivery.id, Delivery.status)
            .where(
                Delivery.status.in_((DeliveryStatus.CLAIMED, DeliveryStatus.SENDING)),
                Delivery.claimed_until < now,
            )
            .with_for_update(skip_locked=True)
        ).all()
        if not stale:
            return 0
        in_doubt = [row.id for row in stale if row.status == DeliveryStatus.SENDING]
        if in_doubt:
            log.warning(
                "%d deliveries were being sent when their dispatcher stopped; "
                "sending them again with their Message-ID",
                len(in_doubt),
            )
        connection.execute(
            update(Delivery)
            .where(Delivery.id.in_([row.id for row in stale]))
            .values(
                status=DeliveryStatus.PENDING,
                claim_token=None,
                claimed_until=None,
                next_attempt_at=now,
            )
        )
    return len(stale)
