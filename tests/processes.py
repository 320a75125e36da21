"""Real `dripstone worker` and `dripstone serve` processes for crash tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from dripstone.config import Settings

DRIPSTONE = str(Path(sys.executable).parent / "dripstone")


def queue_url(settings: Settings, database_url: str) -> str:
    """The queue the processes share: a SQLite file beside the data, or the PostgreSQL database."""
    if database_url.startswith("sqlite"):
        return f"sqlite:///{settings.data_dir / 'queue.db'}"
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, command: str) -> subprocess.Popen[bytes]:
        args = (
            [DRIPSTONE, "worker"]
            if command == "worker"
            else [DRIPSTONE, "serve", "--port", str(free_port())]
        )
        log = (self.log_dir / f"{command}-{len(self.running)}.log").open("wb")
        process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Poll until `condition` holds: another process is doing the work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"{what} did not happen within {timeout}s")
