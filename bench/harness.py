"""Shared by the benchmarks: a real `dripstone serve` on a fresh database, and its memory."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg

DRIPSTONE = str(Path(sys.executable).parent / "dripstone")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Server:
    base: str
    key: str
    pids: list[int]
    database_url: str = ""
    root_pid: int = 0  # the `dripstone serve` process itself (uvicorn's supervisor)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Token token={self.key}"}

    def memory_mb(self, field: str = "VmRSS") -> float:
        """Resident memory (VmRSS) or its peak (VmHWM) of the largest server process, in MB.
        A worker uvicorn replaced is looked up again among the supervisor's children."""
        found = [_status_kb(pid, field) for pid in self.pids]
        if None in found and self.root_pid:
            self.pids = _server_pids(self.root_pid)
            found = [_status_kb(pid, field) for pid in self.pids]
        return max(kb or 0 for kb in found) / 1024


def _status_kb(pid: int, field: str) -> int | None:
    """The field of /proc/PID/status in kB; None for a process that has exited."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _server_pids(parent: int) -> list[int]:
    """The processes that serve requests: uvicorn's workers, or the parent itself."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    workers = [int(pid) for pid in children if "resource_tracker" not in _cmdline(int(pid))]
    return workers or [parent]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except FileNotFoundError:
        return ""


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    """A private schema for one run; yields a URL whose search_path points at it."""
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        separator = "&" if "?" in url else "?"
        yield f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@contextmanager
def running_server(
    backend: str,
    workers: int = 1,
    postgres_url: str = DEFAULT_POSTGRES,
    env: Mapping[str, str] | None = None,
    log_file: Path | None = None,
) -> Iterator[Server]:
    """`dripstone serve` on a free port with a fresh data dir and database of `backend`.

    `env` adds or overrides environment variables (DRIPSTONE_SMTP_URL, ...);
    `log_file`, when given, receives the server's stderr (its JSON logs) instead of /dev/null.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="dripstone-bench-"))
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("DRIPSTONE_")}
    server_env["DRIPSTONE_DATA_DIR"] = str(data_dir)
    server_env["DRIPSTONE_LOG_LEVEL"] = "WARNING"
    server_env.update(env or {})
    with _database(backend, postgres_url) as database_url:
        if database_url:
            server_env["DRIPSTONE_DATABASE_URL"] = database_url
            server_env["DRIPSTONE_QUEUE_URL"] = database_url
        created = subprocess.run(
            [DRIPSTONE, "accounts", "create", "bench"],
            env=server_env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = created.stdout.strip().splitlines()[-1]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        log = log_file.open("ab") if log_file is not None else None
        process = subprocess.Popen(
            [DRIPSTONE, "serve", "--port", str(port), "--workers", str(workers)],
            env=server_env,
            stdout=subprocess.DEVNULL,
            stderr=log or subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(base, process)
            yield Server(
                base=base,
                key=key,
                pids=_server_pids(process.pid),
                database_url=database_url,
                root_pid=process.pid,
            )
        finally:
            process.terminate()
            process.wait(timeout=60)
            if log is not None:
                log.close()
            shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def _database(backend: str, postgres_url: str) -> Iterator[str]:
    if backend == "sqlite":
        yield ""
        return
    with postgres_schema(postgres_url) as url:
        yield url


def _wait_healthy(base: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("dripstone serve exited during start-up")
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("dripstone serve did not become healthy within 60 s")


def machine() -> str:
    """One line describing this machine, for the README's tables."""
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"
