"""Import a generated CSV through the import service, in this process.

    .venv/bin/python bench/import.py [--rows 1000000] [--postgres-url postgresql://...]

Without --postgres-url the database is SQLite in a temporary directory. Prints the file's
size, rows/s (the whole-file check included) and the RSS of this process and of the import's
reader process as the import goes, then their peaks.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import dripstone.tasks  # noqa: F401  (registers the import job's step)
from dripstone import db, migrations
from dripstone.accounts import service as accounts
from dripstone.app import configure_runtime
from dripstone.config import load_settings
from dripstone.db import AccountScope
from dripstone.jobs.service import execute_job, get_job
from dripstone.subscribers import importing
from dripstone.subscribers.lists import create_list
from harness import machine, postgres_schema

PLANS = ("gold", "silver", "bronze", "")
CITIES = ("Oslo", "Lima", "Pune", "Kyoto", "Accra", "Quito")


def write_csv(path: Path, rows: int, seed: int = 7) -> None:
    """`rows` subscribers; one in a hundred has an address the API refuses."""
    pick = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("email,first_name,last_name,phone_number,plan,city\n")
        for n in range(rows):
            email = f"person{n}@example.com" if n % 100 else f"person{n}.example.com"
            phone = f"+1415555{n % 10000:04d}" if n % 10 == 0 else ""
            out.write(
                f"{email},First{n},Last{n},{phone},{pick.choice(PLANS)},{pick.choice(CITIES)}\n"
            )


def rss_mb(field: str = "VmRSS", pid: str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reader_rss_mb(field: str = "VmRSS") -> float:
    """The RSS of this process's children: the import's reader process."""
    children = [
        pid
        for task in Path("/proc/self/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    return sum(rss_mb(field, pid) for pid in children)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default="", help="import into PostgreSQL instead")
    args = parser.parse_args()
    backend = "postgresql" if args.postgres_url else "sqlite"
    print(f"import: {args.rows:,} rows, {backend}; {machine()}")
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dripstone-bench-")))
        url = stack.enter_context(postgres_schema(args.postgres_url)) if args.postgres_url else ""
        settings = load_settings(data_dir=work / "data", database_url=url, queue_url="memory://")
        settings.data_dir.mkdir(parents=True)
        migrations.upgrade(settings.resolved_database_url)
        configure_runtime(settings)
        database = db.database()
        source = work / "people.csv"
        write_csv(source, args.rows)
        print(f"  file: {source.stat().st_size / 1e6:,.1f} MB; RSS before {rss_mb():.1f} MB")
        with database.transaction() as session:
            account, _key = accounts.create_account(session, "bench")
            target = create_list(AccountScope(session, account.id), "Imported")
            account_id, list_id = account.id, target.uuid

        started = time.perf_counter()
        with database.transaction() as session:
            job = importing.start_import(
                AccountScope(session, account_id),
                source,
                importing.ImportOptions(list_id=list_id),
                owned=False,
            )
            jid = job.id
        checked = time.perf_counter() - started
        print(f"  whole-file check: {checked:.2f} s")
        runner = threading.Thread(target=execute_job, args=(database, jid))
        runner.start()
        while runner.is_alive():
            runner.join(timeout=max(1.0, args.rows / 200_000))
            with database.read_sessions() as session:
                running = get_job(AccountScope(session, account_id), jid)
                assert running is not None
                seen = running.done + running.failed
            print(
                f"  {seen:>9,} rows  {seen / (time.perf_counter() - started):>8,.0f}/s"
                f"  RSS {rss_mb():6.1f} MB (reader {reader_rss_mb():5.1f} MB)"
            )
        elapsed = time.perf_counter() - started
        with database.read_sessions() as session:
            finished = get_job(AccountScope(session, account_id), jid)
            assert finished is not None
            state, counts = finished.state, importing.import_counts(finished)
        assert state == "succeeded", state
        print(f"  counts: {counts}")
        print(
            f"result: {args.rows / elapsed:,.0f} rows/s ({elapsed:.1f} s); "
            f"peak RSS {rss_mb('VmHWM'):.1f} MB, reader {reader_rss_mb('VmHWM'):.1f} MB"
        )


if __name__ == "__main__":
    main()
