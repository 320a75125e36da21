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
from dripstone.jobs.queue import huey

log = logging.getLogger(__name__)

Tick = Callable[[Database], object]
Check = Callable[[Database], bool]
_ticks: list[Tick] = []
_due_work: list[tuple[Check, Callable[[], object]]] = []


def on_tick(tick: Tick) -> Tick:
    """Register `tick` to run once a second wherever the queue is consumed."""
    _ticks.append(tick)
    return tick


def when_due(check: Check, task: Callable[[], object]) -> None:
    """Enqueue `task` on a tick where `check` finds work due. Tasks are enqueued only while
    the queue is empty, so a busy queue is not flooded: over a few ticks every free worker
    picks one up, and each task returns after a time budget."""
    _due_work.append((check, task))


def tick(database: Database) -> None:
    """Run every registered tick once, then enqueue the due work; one failing does not
    stop the others."""
    for each in _ticks:
        try:
            each(database)
        except Exception:
            log.exception("tick %s failed", getattr(each, "__name__", each))
    due = []
    for check, task in _due_work:
        try:
            if check(database):
                due.append(task)
        except Exception:
            log.exception("tick check %s failed", getattr(check, "__name__", check))
    if due and huey.pending_count() == 0:
        for task in due:
            task()


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
