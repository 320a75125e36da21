"""Real `dripstone worker` and `dripstone serve` processes for crash tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select

from dripstone.config import Settings
from dripstone.db import Database
from dripstone.delivery.models import Delivery
from dripstone.jobs.queue import configure_queue, huey

DRIPSTONE = str(Path(sys.executable).parent / "dripstone")


def queue_url(settings: Settings, database_url: str) -> str:
    """The queue the processes share: a SQLite file beside the data, or the PostgreSQL database."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{settings.data_dir / 'queue.db'}"
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def flush_queue(url: str, name: str) -> None:
    """Empty the queue `name` at `url`: its tasks, schedule, locks and counters."""
    configure_queue(url, name)
    huey.storage.flush_all()
    configure_queue("memory://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []
        self.servers: dict[str, int] = {}  # base URL -> index in `running`

    def start(self, command: str, port: int | None = None) -> subprocess.Popen[bytes]:
        args = (
            [DRIPSTONE, "worker"]
            if command == "worker"
            else [DRIPSTONE, "serve", "--port", str(port or free_port())]
        )
        log = self._log(len(self.running), command).open("wb")
        process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def serve(self) -> str:
        """Start a `dripstone serve`; its base URL (`wait_answering` waits for it)."""
        port = free_port()
        self.servers[f"http://127.0.0.1:{port}"] = len(self.running)
        self.start("serve", port)
        return f"http://127.0.0.1:{port}"

    def wait_answering(self, base: str, timeout: float = 120) -> None:
        """Wait until the server at `base` answers; if it exits instead, fail with its log."""
        process = self.running[self.servers[base]]

        def answers() -> bool:
            if process.poll() is not None:
                log = self._log(self.servers[base], "serve").read_text()
                raise AssertionError(f"dripstone serve exited:\n{log}")
            try:
                return httpx.get(f"{base}/healthz").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(answers, f"dripstone serve answering on {base}", timeout)

    def _log(self, index: int, command: str) -> Path:
        return self.log_dir / f"{command}-{index}.log"

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def wait_until(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 180,
    state: Callable[[], str] | None = None,
) -> None:
    """Poll until `condition` holds: another process is doing the work. On timeout, the
    failure says `state()` too: what the processes had got to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    found = f"; {state()}" if state is not None else ""
    raise AssertionError(f"{what} did not happen within {timeout:.1f}s{found}")


# With the default leases, work that a killed process held is taken up again within this long
# of the restart (the leases run out at most DRIPSTONE_DELIVERY_CLAIM_SECONDS and
# DRIPSTONE_JOB_LEASE_SECONDS after the kill, and a tick notices within a second).
RECOVERY_SECONDS = 30.0


def rate(done: int, seconds: float) -> float:
    """Units of work per second, as measured on the process before it was killed."""
    assert done > 0, "nothing was done before the kill"
    assert seconds > 0, "no time was measured before the kill"
    return done / seconds


def recovery_budget(remaining: int, per_second: float, waits: float = 0.0) -> float:
    """Seconds from a restart by which `remaining` units of work must be done: the recovery
    promise, plus the work itself at the rate measured before the kill, plus `waits` the
    work itself must sit through (a drip's delay)."""
    return RECOVERY_SECONDS + remaining / per_second + waits


class TakenBack:
    """When the deliveries a killed process had claimed were all taken back from it (none
    still carries its claim token): call `check` while waiting for the work to end."""

    def __init__(self, database: Database) -> None:
        self.database = database
        with database.read_sessions() as session:
            self.held = {
                row.id: row.claim_token
                for row in session.execute(
                    select(Delivery.id, Delivery.claim_token).where(
                        Delivery.status.in_(("claimed", "sending"))
                    )
                )
            }
        self.at = None if self.held else time.monotonic()

    def check(self) -> None:
        if self.at is not None:
            return
        with self.database.read_sessions() as session:
            now = session.execute(
                select(Delivery.id, Delivery.claim_token).where(Delivery.id.in_(self.held))
            ).all()
        if all(self.held[row.id] != row.claim_token for row in now):
            self.at = time.monotonic()
