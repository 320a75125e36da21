"""The one source of the current time, so tests move time instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now


_clock: Clock = SystemClock()


def now() -> datetime:
    """The current time in UTC, from the installed clock."""
    return _clock.now()


def use_clock(clock: Clock) -> Clock:
    """Install `clock` as the time source; returns the one it replaced."""
    global _clock
    previous, _clock = _clock, clock
    return previous
