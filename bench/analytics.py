"""The analytics endpoints on one large send, through a real `dripstone serve`.

    .venv/bin/python bench/analytics.py [--backend sqlite|postgresql] [--deliveries 1000000]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

One send of `--deliveries` deliveries (30 % opened, 10 % clicked, over 5 links) is loaded
straight into the database with bulk INSERTs, not sent; then the counters are rebuilt from
those rows. Prints the median of 10 requests of each endpoint, the time to the first byte of
the whole deliveries table, the server's memory while it streams that table, and the list of
100 mailings.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.progress import Progress

from dripstone import db
from dripstone.analytics import counters
from dripstone.config import load_settings
from harness import DEFAULT_POSTGRES, Server, machine, running_server

BASE = "/v1/marketing"
LINKS = [f"https://shop.example.com/item/{n}" for n in range(1, 6)]
HTML = "<p>" + " ".join(f'<a href="{url}">Item {n}</a>' for n, url in enumerate(LINKS, 1)) + "</p>"
BATCH = 50_000
REPEAT = 10
MAILINGS = 100


class Loader:
    """Bulk INSERTs into the server's own database (SQLite file or PostgreSQL schema)."""

    def __init__(self, server: Server, sqlite_path: str) -> None:
        self.postgres_url, self.sqlite_path = server.database_url, sqlite_path

    @contextmanager
    def connection(self) -> Iterator[Any]:
        if self.postgres_url:
            with psycopg.connect(self.postgres_url) as conn:
                yield conn
        else:
            with sqlite3.connect(self.sqlite_path, timeout=60) as conn:
                yield conn

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s") if self.postgres_url else text

    def stamp(self, moment: datetime) -> Any:
        naive = moment.astimezone(UTC).replace(tzinfo=None)
        return naive if self.postgres_url else naive.isoformat(" ", "microseconds")


def new_uuid_sql(postgres: bool) -> str:
    if postgres:
        return "gen_random_uuid()::text"
    return (
        "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' ||"
        " substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-' ||"
        " hex(randomblob(6)))"
    )


def load(loader: Loader, send_id: str, total: int) -> None:
    """`total` subscribers, one delivered delivery each in the send; every tenth recipient
    opens (three in ten) and clicks (one in ten, link by turn), with their events."""
    postgres = bool(loader.postgres_url)
    series = (
        "generate_series(?, ?) AS g(x)"
        if postgres
        else "(WITH RECURSIVE seq(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM seq WHERE x < ?)"
        " SELECT x FROM seq) AS g"
    )
    now = loader.stamp(datetime.now(UTC))
    with loader.connection() as conn:
        send = conn.execute(
            loader.sql(
                "SELECT id, account_id, campaign_mailing_id FROM campaign_mailing_sends"
                " WHERE uuid = ?"
            ),
            (send_id,),
        ).fetchone()
    send_pk, account_id, mailing_pk = send
    link_case = " ".join(f"WHEN {n - 1} THEN '{url}'" for n, url in enumerate(LINKS, 1))
    with Progress() as progress:
        task = progress.add_task("loading deliveries and events", total=total)
        for start in range(1, total + 1, BATCH):
            end = min(total, start + BATCH - 1)
            with loader.connection() as conn:
                conn.execute(
                    loader.sql(
                        "INSERT INTO subscribers (uuid, account_id, email, first_name, created_at,"
                        f" updated_at) SELECT {new_uuid_sql(postgres)}, ?, 'r' || x ||"
                        f" '@example.com', 'R' || x, ?, ? FROM {series}"
                    ),
                    (account_id, now, now, start, end),
                )
                conn.execute(
                    loader.sql(
                        "INSERT INTO deliveries (account_id, kind, send_id, campaign_mailing_id,"
                        " subscriber_id, email, tracked, status, attempts, next_attempt_at,"
                        " created_at, sent_at, finished_at, opened_at, clicked_at)"
                        " SELECT s.account_id, 'campaign', ?, ?, s.id, s.email, ?, 'delivered', 1,"
                        " ?, ?, ?, ?,"
                        " CASE WHEN s.id % 10 < 3 THEN ? END, CASE WHEN s.id % 10 = 0 THEN ? END"
                        " FROM subscribers s WHERE s.account_id = ? AND s.email LIKE 'r%'"
                        " AND s.id > (SELECT coalesce(max(subscriber_id), 0) FROM deliveries"
                        "  WHERE send_id = ?) ORDER BY s.id"
                    ),
                    (send_pk, mailing_pk, True, now, now, now, now, now, now, account_id, send_pk),
                )
                conn.execute(
                    loader.sql(
                        "INSERT INTO tracking_events (account_id, delivery_id, subscriber_id,"
                        " kind, html_id, url, occurred_at)"
                        " SELECT account_id, id, subscriber_id, 'open', NULL, NULL, ?"
                        " FROM deliveries WHERE send_id = ? AND opened_at IS NOT NULL"
                        " AND id > (SELECT coalesce(max(delivery_id), 0) FROM tracking_events)"
                    ),
                    (now, send_pk),
                )
                conn.execute(
                    loader.sql(
                        "INSERT INTO tracking_events (account_id, delivery_id, subscriber_id,"
                        " kind, html_id, url, occurred_at)"
                        " SELECT account_id, id, subscriber_id, 'click', (id / 10) % 5 + 1,"
                        f" CASE (id / 10) % 5 {link_case} END, ?"
                        " FROM deliveries WHERE send_id = ? AND clicked_at IS NOT NULL"
                        " AND id > (SELECT coalesce(max(delivery_id), 0) FROM tracking_events"
                        "  WHERE kind = 'click')"
                    ),
                    (now, send_pk),
                )
            progress.update(task, completed=end)
    with loader.connection() as conn:
        if postgres:
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        else:
            conn.execute("ANALYZE")


def rebuild_counters(database_url: str) -> float:
    started = time.perf_counter()
    url = load_settings(database_url=database_url).resolved_database_url
    with db.configure(url).transaction() as session:
        counters.rebuild(session)
    return time.perf_counter() - started


def median_ms(request: Callable[[], httpx.Response]) -> float:
    request().raise_for_status()  # warm
    timings = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        request().raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def first_byte_ms(client: httpx.Client, url: str) -> float:
    timings = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        with client.stream("GET", url) as response:
            response.raise_for_status()
            next(response.iter_raw())
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def stream_whole(
    server: Server, client: httpx.Client, url: str, headers: dict[str, str] | None = None
) -> tuple[float, int, float, float]:
    """Seconds, bytes, resident MB before, peak resident MB while streaming `url`."""
    before = server.memory_mb()
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, server.memory_mb())
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    started = time.perf_counter()
    size = 0
    with client.stream("GET", url, headers=headers) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    elapsed = time.perf_counter() - started
    done.set()
    watcher.join()
    return elapsed, size, before, peak


def prepare(client: httpx.Client) -> str:
    """100 mailings, one of them sent (to an empty list, so the send has no deliveries yet)."""
    mailing = client.post(
        f"{BASE}/campaign_mailings",
        json={"campaign_mailing": {"subject": "Big send", "html_part": HTML}},
    )
    mailing.raise_for_status()
    for n in range(1, MAILINGS):
        body = {"campaign_mailing": {"subject": f"Mailing {n}", "html_part": HTML}}
        client.post(f"{BASE}/campaign_mailings", json=body).raise_for_status()
    empty = client.post(f"{BASE}/subscription_lists", json={"subscription_list": {"name": "Big"}})
    empty.raise_for_status()
    started = client.post(
        f"{BASE}/campaign_mailing_sends",
        json={
            "campaign_mailing_id": mailing.json()["data"]["id"],
            "campaign_mailing_send": {
                "sender_email": "owner@example.com",
                "subscription_list_id": empty.json()["data"]["id"],
            },
        },
    )
    started.raise_for_status()
    data = started.json()["data"]
    while client.get(f"{BASE}/jobs/{data['jid']}").json()["data"]["attributes"]["state"] not in (
        "succeeded",
        "failed",
    ):
        time.sleep(0.2)
    return str(data["campaign_mailing_send_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    total = args.deliveries
    print(
        f"analytics: one send of {total:,} deliveries ({total * 3 // 10:,} opened,"
        f" {total // 10:,} clicked over {len(LINKS)} links), {args.backend}; {machine()}"
    )
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    env = {"DRIPSTONE_DATABASE_URL": f"sqlite:///{sqlite_path}"} if args.backend == "sqlite" else {}
    with (
        running_server(args.backend, postgres_url=args.postgres_url, env=env) as server,
        httpx.Client(base_url=server.base, headers=server.headers, timeout=600) as client,
    ):
        send_id = prepare(client)
        started = time.perf_counter()
        load(Loader(server, sqlite_path), send_id, total)
        print(f"  loaded in {time.perf_counter() - started:.1f} s")
        database_url = server.database_url or f"sqlite:///{sqlite_path}"
        print(f"  counters.rebuild: {rebuild_counters(database_url):.1f} s")
        send = {"campaign_mailing_send_id": send_id}
        totals = client.get(f"{BASE}/analytics/campaign_mailing_send_totals", params=send)
        figures = totals.json()["data"]
        print(
            "  totals: "
            + ", ".join(f"{k} {figures[k]:,}" for k in ("delivered", "viewed", "clicked"))
        )
        timed: list[tuple[str, str, dict[str, Any]]] = [
            ("send totals", "/analytics/campaign_mailing_send_totals", send),
            ("account totals", "/analytics/campaign_mailing_send_totals", {}),
            ("sends table", "/analytics/campaign_mailing_sends_table", {}),
            ("links by unique link", "/analytics/tracking_links_by_unique_link", send),
            (
                f"subscribers by link (all {total // 50:,})",
                "/analytics/subscribers_by_tracking_link",
                {**send, "html_id": 1},
            ),
            (
                "deliveries table, items=100",
                "/analytics/campaign_mailing_deliveries_table",
                {**send, "items": 100},
            ),
            ("tracking links, items=100", "/tracking_links", {**send, "items": 100}),
            (f"campaign mailings, items={MAILINGS}", "/campaign_mailings", {"items": MAILINGS}),
        ]
        for label, path, params in timed:
            ms = median_ms(lambda path=path, params=params: client.get(BASE + path, params=params))
            print(f"  {label:<38} median {ms:8.1f} ms")
        table = (
            f"{BASE}/analytics/campaign_mailing_deliveries_table?campaign_mailing_send_id={send_id}"
        )
        print(
            f"  {'deliveries table, first byte':<38} median {first_byte_ms(client, table):8.1f} ms"
        )
        seconds, size, before, peak = stream_whole(server, client, table)
        print(
            f"  whole deliveries table: {size / 1e6:,.1f} MB in {seconds:.1f} s;"
            f" server RSS {before:.0f} MB before, peak {peak:.0f} MB while streaming"
        )
        seconds, size, before, peak = stream_whole(server, client, table, {"accept": "text/csv"})
        print(
            f"  the same as CSV: {size / 1e6:,.1f} MB in {seconds:.1f} s;"
            f" server RSS {before:.0f} MB before, peak {peak:.0f} MB while streaming"
        )


if __name__ == "__main__":
    main()
