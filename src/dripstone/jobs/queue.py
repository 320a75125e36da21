"""The Huey instance every task is registered on, and the storage behind it."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from huey import Huey
from huey.consumer import Consumer
from huey.storage import MemoryStorage, PostgresStorage, RedisStorage, SqliteStorage

QUEUE_NAME = "dripstone"

# Tasks register on this instance at import time; `configure_queue` gives it its storage.
huey = Huey(QUEUE_NAME, results=False, utc=True, storage_class=MemoryStorage)


def configure_queue(url: str, name: str = QUEUE_NAME) -> None:
    """Point the queue at `url`: sqlite:///path, postgresql://…, redis://… or memory://.
    Deployments that share one Redis or one database keep their tasks apart by `name`."""
    huey.immediate = False
    scheme = urlsplit(url).scheme
    storage: Any
    if scheme == "sqlite":
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        storage = SqliteStorage(name, filename=str(path), timeout=30)
    elif scheme == "postgresql":
        storage = PostgresStorage(name, dsn=url)
    elif scheme == "redis":
        storage = RedisStorage(name, url=url)
    elif scheme == "memory":
        storage = MemoryStorage(name)
    else:
        raise ValueError(f"unsupported queue URL scheme: {scheme!r}")
    huey.storage = storage


def run_tasks_inline() -> None:
    """Run every enqueued task at once in the enqueuing thread (tests, one-off CLI work)."""
    huey.immediate = True


class EmbeddedConsumer(Consumer):  # type: ignore[misc]
    """A consumer that runs inside another program (the API server) and leaves its
    signal handling alone; the host stops it with `stop(graceful=True)`."""

    def _set_signal_handlers(self) -> None:
        pass


def create_consumer(workers: int, *, embedded: bool) -> Consumer:
    """A thread-pool consumer of the queue; `embedded` for one inside `dripstone serve`."""
    logging.getLogger("huey").setLevel(logging.WARNING)
    consumer_class = EmbeddedConsumer if embedded else Consumer
    return consumer_class(
        huey,
        workers=workers,
        worker_type="thread",
        periodic=True,
        check_worker_health=True,
        scheduler_interval=1,
    )
