"""The tick: once a second, in every process that consumes the queue, work that has fallen
due (a retry, a scheduled send, a drip step) is noticed and put on the queue.

Huey's periodic tasks run once a minute; steps must start within a second or two of their
time. Ticks only look and enqueue; the work itself runs in queue tasks, and every claim is
made in the database, so ticks in several processes at once do no harm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dripstone import db
from dripstone.db import Database

log = logging.getLogger(__name__)

Tick = Callable[[Database], object]
_ticks: list[Tick] = []


def on_tick(tick: Tick) -> Tick:
    """Register `tick` to run once a second wherever the queue is consumed."""
    _ticks.append(tick)
    return tick


def tick(database: Database) -> None:
    """Run every registered tick once; one failing does not stop the others."""
    for each in _ticks:
        try:
            each(database)
        except Exception:
            log.exception("tick %s failed", getattr(each, "__name__", each))


class Ticker(threading.Thread):
    """A daemon thread that ticks every `interval` seconds until stopped."""

    def __init__(self, interval: float = 1.0) -> None:
        super().__init__(name="dripstone-ticker", daemon=True)
        self._interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._interval):
            tick(db.database())

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=10)
