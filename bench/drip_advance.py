"""100,000 enrollments falling due at the same moment, sent through SMTP to a local sink.

    .venv/bin/python bench/drip_advance.py [--backend sqlite|postgresql] [--enrollments 100000]

Against a real `dripstone serve --workers 2` with DRIPSTONE_SMTP_URL pointing at Postfix's
`smtp-sink`: seeds the subscribers, starts a campaign trigger → delay 1 hour → email → exit
(everyone is enrolled at the delay), then moves every enrollment's delay into the past in one
UPDATE. Prints how long the runner took to take every step (steps/s), how long until every
email was accepted by the sink (emails/s), how late the first step ran, and peak memory.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from drip_start import BASE, create_campaign
from harness import Server, machine, running_server
from seed import seed_subscribers


@contextmanager
def smtp_sink() -> Iterator[str]:
    """Postfix's smtp-sink on a free port; yields its smtp:// URL."""
    binary = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [binary, "-c", "-u", "nobody", f"127.0.0.1:{port}", "1000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"smtp://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


class Database:
    """The server's database, for set-up and for counting (SQLite file or PostgreSQL)."""

    def __init__(self, server: Server, sqlite_path: str) -> None:
        self.url, self.path = server.database_url, sqlite_path

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """Run `sql` (with ? placeholders); its first row, if it returns any."""
        if self.url:
            with psycopg.connect(self.url, autocommit=True) as conn:
                cursor = conn.execute(sql.replace("?", "%s"), params)
                return cursor.fetchone() if cursor.description else None
        with sqlite3.connect(self.path, timeout=60) as conn:
            return conn.execute(sql, params).fetchone()

    def stamp(self, moment: datetime) -> Any:
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        return naive if self.url else naive.isoformat(" ", "microseconds")

    def scalar(self, sql: str) -> int:
        row = self.execute(sql)
        return int(row[0]) if row and row[0] is not None else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--log", type=Path, help="append the server's stderr (JSON logs) here")
    args = parser.parse_args()
    total = args.enrollments
    print(f"drip_advance: {total:,} enrollments due at once, {args.backend}; {machine()}")
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    with smtp_sink() as sink_url:
        env = {"DRIPSTONE_SMTP_URL": sink_url}
        if args.backend == "sqlite":
            env["DRIPSTONE_DATABASE_URL"] = f"sqlite:///{sqlite_path}"
        with running_server(args.backend, workers=2, env=env, log_file=args.log) as server:
            database = Database(server, sqlite_path)
            seed_subscribers(server.database_url, sqlite_path, "bench", total)
            with httpx.Client(base_url=server.base, headers=server.headers, timeout=120) as client:
                campaign = create_campaign(
                    client,
                    [
                        {"type": "delay", "amount": 1, "unit": "hours"},
                        {"type": "email"},
                        {"type": "exit"},
                    ],
                )
                response = client.post(f"{BASE}/drip_campaigns/{campaign}/start")
                response.raise_for_status()
                for jid in response.json()["data"]["jids"]:
                    while (
                        client.get(f"{BASE}/jobs/{jid}").json()["data"]["attributes"]["state"]
                        != "succeeded"
                    ):
                        time.sleep(0.2)
            waiting = database.scalar("SELECT count(*) FROM drip_enrollments WHERE node_id = 'n0'")
            print(f"  {waiting:,} enrollments waiting at the delay")
            memory_before = server.memory_mb()
            due_at = datetime.now(UTC)
            database.execute(
                "UPDATE drip_enrollments SET next_run_at = ?, arrived_at = ?",
                (database.stamp(due_at), database.stamp(due_at - timedelta(hours=1))),
            )
            started = time.perf_counter()
            first_step = steps_done = emails_done = None
            peak = memory_before
            while emails_done is None:
                time.sleep(0.25)
                peak = max(peak, server.memory_mb())
                elapsed = time.perf_counter() - started
                if first_step is None and database.scalar("SELECT count(*) FROM deliveries") > 0:
                    first_step = elapsed
                if (
                    steps_done is None
                    and database.scalar(
                        "SELECT count(*) FROM drip_enrollments WHERE state = 'completed'"
                    )
                    >= total
                ):
                    steps_done = elapsed
                if (
                    database.scalar("SELECT count(*) FROM deliveries WHERE status = 'delivered'")
                    >= total
                ):
                    emails_done = elapsed
                if elapsed > 1800:
                    raise SystemExit("gave up after 30 minutes")
            hwm = server.memory_mb("VmHWM")
    assert steps_done is not None
    assert first_step is not None
    print(f"  first step ran {first_step:.2f} s after falling due (polled every 0.25 s)")
    print(
        f"  every step taken after {steps_done:.1f} s: {total / steps_done:,.0f} enrollments/s "
        f"(each: the delay, the email's delivery row, the exit)"
    )
    print(
        f"  every email accepted by the sink after {emails_done:.1f} s: "
        f"{total / emails_done:,.0f} emails/s"
    )
    print(
        f"  server memory (largest process): {memory_before:.0f} MB before, "
        f"{peak:.0f} MB peak sampled, VmHWM {hwm:.0f} MB"
    )


if __name__ == "__main__":
    main()
