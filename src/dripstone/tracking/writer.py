"""Group commit of tracking hits: one transaction for every open and click that arrived
while the previous one committed.

Each request hands its `Hit` to the process's writer and waits until the transaction holding
it has committed, so a recipient is answered only once the event is in the database. The writer
runs on the server's event loop and does its database work on threads of its own: on SQLite
one batch at a time, so the write lock is taken once per batch, not once per request; on
PostgreSQL `PARALLEL_ON_POSTGRESQL` batches at once.

Bounds: a batch holds at most `MAX_BATCH` hits, and waits at most `MAX_WAIT_SECONDS` after its
first hit arrived for others to join it. Under load no batch waits at all: the hits that
arrived while the previous batch committed are taken at once. A batch that fails is rolled back
and its hits are recorded again one transaction each, so one bad hit costs only itself; a hit
that fails alone too raises `HitNotRecorded` in its request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dripstone import db
from dripstone.delivery.models import Delivery
from dripstone.tracking import service
from dripstone.tracking.service import Hit

log = logging.getLogger("dripstone.tracking")

MAX_BATCH = 100
"""Hits in one transaction. Recording takes about 0.7 ms of CPU per hit on the benchmark
machine (bench/tracking.py), so a full batch holds SQLite's write lock for some 70 ms: larger
batches would save little per hit and make every request in them wait longer."""
PARALLEL_ON_POSTGRESQL = 4
"""Batches committing at once on PostgreSQL, each on its own connection: a batch there spends
most of its time waiting for the database's answers. SQLite has one writer: one batch."""
MAX_WAIT_SECONDS = 0.002
"""How long an idle writer lets a batch's first hit wait for others: the latency a lone
recipient pays for batching."""

Recorder = Callable[[Session, Sequence[Hit]], set[int]]


class HitNotRecorded(Exception):
    """The hit's transaction failed, retried alone too: the hit is not in the database."""


@dataclass(frozen=True)
class _Pending:
    hit: Hit
    committed: asyncio.Future[bool]  # True: the delivery exists and the hit is recorded
    arrived: float  # the event loop's clock


class HitWriter:
    """Collects hits into batches and commits each batch in one transaction of `database`.

    `start` and `stop` run on the event loop that serves the requests (the app's lifespan).
    `record` falls back to a transaction of its own when the writer is not running, so a hit
    is never refused for want of a writer (an app served without its lifespan, or a request
    that arrives during shutdown).
    """

    def __init__(
        self,
        database: db.Database,
        *,
        max_batch: int = MAX_BATCH,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
        parallel: int | None = None,
        record: Recorder = service.record_hits,
    ) -> None:
        self.database = database
        self.max_batch = max_batch
        self.max_wait_seconds = max_wait_seconds
        self.parallel = parallel or (1 if database.is_sqlite else PARALLEL_ON_POSTGRESQL)
        self._record = record
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()  # replaced by `start`
        self._task: asyncio.Task[None] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._accepting = False
        self.batches = 0
        """Transactions committed, batches and lone retries alike."""

    def start(self) -> None:
        """Begin collecting hits on the running event loop."""
        if self._task is not None:
            raise RuntimeError("the hit writer is already running")
        self._queue = asyncio.Queue()  # of this event loop
        self._thread = ThreadPoolExecutor(self.parallel, thread_name_prefix="dripstone-hits")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="hit writer")
        self._accepting = True

    async def stop(self) -> None:
        """Commit every hit handed in so far, then end. Hits handed in afterwards are
        recorded in transactions of their own."""
        if self._task is None:
            return
        self._accepting = False
        self._queue.put_nowait(None)
        try:
            await self._task
        finally:
            self._task = None
            if self._thread is not None:
                self._thread.shutdown(wait=True)
                self._thread = None

    async def record(self, hit: Hit) -> bool:
        """Record `hit`; returns once it is committed: True, or False when its delivery no
        longer exists (nothing is recorded then). Raises HitNotRecorded."""
        if not self._accepting:
            found = await run_in_threadpool(record_alone, self.database, hit, self._record)
            return hit.delivery_id in found
        # A recipient who hangs up cancels the request, not the hit: it is committed anyway.
        return await asyncio.shield(self.submit(hit))

    def submit(self, hit: Hit) -> asyncio.Future[bool]:
        """Hand `hit` to the running writer; the future is `record`'s answer."""
        if not self._accepting:
            raise RuntimeError("the hit writer is not running")
        loop = asyncio.get_running_loop()
        pending = _Pending(hit, loop.create_future(), loop.time())
        self._queue.put_nowait(pending)
        return pending.committed

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        # A batch is formed only once a connection is free for it: until then hits accumulate.
        free = asyncio.Semaphore(self.parallel)
        committing: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None]) -> None:
            committing.discard(task)
            free.release()

        stopping = False
        while not stopping:
            await free.acquire()
            first = await self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = first.arrived + self.max_wait_seconds
            while len(batch) < self.max_batch:
                try:
                    pending = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        pending = await asyncio.wait_for(self._queue.get(), left)
                    except TimeoutError:
                        break
                if pending is None:
                    stopping = True
                    break
                batch.append(pending)
            task = loop.create_task(self._commit(batch))
            committing.add(task)
            task.add_done_callback(finished)
        await asyncio.gather(*committing)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            await self._commit_batch(batch)
        finally:  # whatever went wrong, no request waits forever
            for pending in batch:
                if not pending.committed.done():
                    pending.committed.set_exception(HitNotRecorded("the writer stopped"))

    async def _commit_batch(self, batch: list[_Pending]) -> None:
        loop = asyncio.get_running_loop()
        hits = [pending.hit for pending in batch]
        try:
            found = await loop.run_in_executor(self._thread, self._transaction, hits)
        except Exception:
            log.warning(
                "a batch of tracking hits failed; recording them one by one",
                extra={"hits": len(hits)},
                exc_info=True,
            )
            for pending in batch:
                await self._commit_alone(pending)
            return
        self.batches += 1
        for pending in batch:
            pending.committed.set_result(pending.hit.delivery_id in found)

    async def _commit_alone(self, pending: _Pending) -> None:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                self._thread, record_alone, self.database, pending.hit, self._record
            )
        except HitNotRecorded as exc:
            pending.committed.set_exception(exc)
            return
        self.batches += 1
        pending.committed.set_result(pending.hit.delivery_id in found)

    def _transaction(self, hits: list[Hit]) -> set[int]:
        # Deliveries in id order: two processes' batches then lock their rows (PostgreSQL) in
        # the same order and cannot deadlock. The sort is stable: one delivery's hits keep
        # their order.
        in_lock_order = sorted(hits, key=lambda hit: hit.delivery_id)
        ids = {hit.delivery_id for hit in hits}
        with self.database.transaction() as session:
            # The batch's deliveries in one query: recording then finds each in the session
            # instead of reading it once per hit (`loaded` keeps them there).
            loaded = session.scalars(select(Delivery).where(Delivery.id.in_(ids))).all()
            found = self._record(session, in_lock_order)
            del loaded
            return found


def record_alone(
    database: db.Database, hit: Hit, record: Recorder = service.record_hits
) -> set[int]:
    """Record one hit in a transaction of its own; raises HitNotRecorded (and logs why)."""
    try:
        with database.transaction() as session:
            return record(session, [hit])
    except Exception as exc:
        fields = {"kind": hit.kind, "delivery_id": hit.delivery_id, "html_id": hit.html_id}
        log.error("tracking hit not recorded", extra=fields, exc_info=True)
        raise HitNotRecorded(type(exc).__name__) from exc


_writers: dict[asyncio.AbstractEventLoop, HitWriter] = {}
"""The writer of each event loop that serves requests: one per server process (an app served
in-process by a test runs on a loop of its own)."""


def start(database: db.Database) -> HitWriter:
    """Start the writer of the running event loop (the app's lifespan)."""
    loop = asyncio.get_running_loop()
    if loop in _writers:
        raise RuntimeError("this event loop's hit writer is already running")
    writer = _writers[loop] = HitWriter(database)
    writer.start()
    return writer


async def stop() -> None:
    """Commit what the running event loop's writer holds and end it."""
    writer = _writers.pop(asyncio.get_running_loop(), None)
    if writer is not None:
        await writer.stop()


async def record(hit: Hit) -> bool:
    """Record `hit` through the running event loop's writer, or in a transaction of its own
    when none runs. True once committed; False when its delivery no longer exists. Raises
    HitNotRecorded."""
    writer = _writers.get(asyncio.get_running_loop())
    if writer is None:
        return hit.delivery_id in await run_in_threadpool(record_alone, db.database(), hit)
    return await writer.record(hit)
