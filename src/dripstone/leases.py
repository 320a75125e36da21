"""Leases this process holds on shared work, and the heartbeat that keeps them alive.

Work taken from the database (a dispatcher's claimed deliveries) carries a short lease. While
the work runs, the heartbeat of its process renews the lease every quarter of its length; when
the process dies, the heartbeat dies with it, the lease runs out, and a sweep in any process
takes the work back. So a lease need not outlast the slowest step of the work (an SMTP
exchange), only a few missed heartbeats.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dripstone import db
from dripstone.db import Database

log = logging.getLogger(__name__)

# Renews one lease; conditional on the holder's token, so it cannot renew a lease that a sweep
# has taken back.
Renewal = Callable[[Database], object]
BEATS_PER_LEASE = 4

_held: dict[int, Renewal] = {}
_numbers = itertools.count()
_lock = threading.Lock()


@contextmanager
def kept_alive(renew: Renewal) -> Iterator[None]:
    """Have the heartbeat call `renew` until the block ends."""
    with _lock:
        number = next(_numbers)
        _held[number] = renew
    try:
        yield
    finally:
        with _lock:
            del _held[number]


def beat(database: Database) -> None:
    """Renew every lease this process holds, once; one failing does not stop the others."""
    with _lock:
        renewals = list(_held.values())
    for renew in renewals:
        try:
            renew(database)
        except Exception:
            log.exception("renewing a lease failed")


class Heartbeat(threading.Thread):
    """A daemon thread that beats BEATS_PER_LEASE times per `lease_seconds` until stopped."""

    def __init__(self, lease_seconds: float) -> None:
        super().__init__(name="dripstone-heartbeat", daemon=True)
        self._interval = lease_seconds / BEATS_PER_LEASE
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            beat(db.database())

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)
