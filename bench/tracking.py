"""Open and click requests from concurrent recipients while a campaign send runs.

    .venv/bin/python bench/tracking.py [--backend sqlite|postgresql] [--postgres-url URL]
        [--messages 100000] [--clients 20] [--workers 1] [--click-share 0.3]
        [--sink smtp-sink|aiosmtpd] [--seconds-after 0] [--log FILE]

Starts a sink (Postfix's smtp-sink by default, or aiosmtpd in a subprocess) and a real
`dripstone serve` sending into it, loads N subscribers (not timed), creates a mailing with
three tracked links and starts its send. As soon as messages are delivered, `--clients`
concurrent clients (one keep-alive connection each, asyncio) request the open pixel and the click
URLs of delivered messages: URLs signed with the server's secret for the delivery ids the
database marks delivered, as the messages carry them. The clients stop when the send's job has
succeeded, or `--seconds-after` later (the request path without a send). Prints requests/s and
latency percentiles of each phase, the send's own rate meanwhile, CPU seconds of the server and
of the clients, and the events the database holds afterwards against the answered hits (200
for an open, 302 for a click): every one must be there.
Figures, not pass/fail; exits 1 only if the send fails or times out.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from sqlalchemy import text

from dripstone.db import Database
from dripstone.delivery.signing import TrackingTokens
from harness import DEFAULT_POSTGRES, machine, running_server
from send import API, data, load, running_sink, tree_cpu

SECRET = "bench-tracking-secret-0123456789abcdef0123456789"
LINKS = (
    "https://example.com/changelog?utm_source=newsletter",
    "https://example.com/stories/customers",
    "https://help.example.com/",
)
HTML = (
    "<!doctype html><html><body><h1>Hello {{ first_name | default('there') }}!</h1>"
    f'<p>Read the <a href="{LINKS[0]}">release notes</a>, the '
    f'<a href="{LINKS[1]}">customer stories</a> or the <a href="{LINKS[2]}">help centre</a>.'
    "</p></body></html>"
)
POLL_SECONDS = 0.5


@dataclass
class Delivered:
    """The ids of delivered messages, refreshed from the database by a thread."""

    ids: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)

    def refresh(self, database: Database) -> None:
        with database.reader.connect() as connection:
            rows = connection.execute(text("SELECT id FROM deliveries WHERE status = 'delivered'"))
            for (delivery_id,) in rows:
                if delivery_id not in self.seen:
                    self.seen.add(delivery_id)
                    self.ids.append(delivery_id)


@dataclass
class Phase:
    """The hits of one phase of the run: during the send, or after it."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: int = 0
    started: float = 0.0
    ended: float = 0.0


class Connection:
    """One keep-alive HTTP/1.1 connection that sends GETs and reads the answers' status and
    body: a client this small spends a fraction of the CPU per request that httpx does, and
    the server shares the machine's two cores with it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(*await asyncio.open_connection(host, port))

    async def get(self, path: str) -> int:
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return int(status_line.split(" ", 2)[1])

    def close(self) -> None:
        self.writer.close()


async def recipients(
    base: str,
    clients: int,
    click_share: float,
    delivered: Delivered,
    send_done: threading.Event,
    done: threading.Event,
) -> dict[str, Phase]:
    tokens = TrackingTokens(SECRET, base)
    phases = {"during the send": Phase(), "after the send": Phase()}
    while not delivered.ids and not done.is_set():
        await asyncio.sleep(0.05)
    phases["during the send"].started = time.perf_counter()

    address = urlsplit(base)

    async def recipient(seed: int) -> None:
        rng = random.Random(seed)
        connection: Connection | None = None
        while not done.is_set():
            delivery_id = rng.choice(delivered.ids)
            if rng.random() < click_share:
                link = rng.randrange(len(LINKS))
                kind, url = "click", tokens.click_url(delivery_id, link + 1, LINKS[link])
            else:
                kind, url = "open", tokens.open_url(delivery_id)
            phase = phases["after the send" if send_done.is_set() else "during the send"]
            began = time.perf_counter()
            try:
                if connection is None:
                    connection = await Connection.open(address.hostname or "", address.port or 80)
                status = await connection.get(urlsplit(url).path)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                phase.transport_errors += 1
                if connection is not None:
                    connection.close()
                connection = None
                continue
            ended = time.perf_counter()
            phase.latencies.append(ended - began)
            phase.statuses[kind, status] += 1
            phase.started = phase.started or began
            phase.ended = max(phase.ended, ended)
        if connection is not None:
            connection.close()

    await asyncio.gather(*(recipient(n) for n in range(clients)))
    return phases


def follow_send(
    client: httpx.Client,
    jid: str,
    database: Database,
    delivered: Delivered,
    send_done: threading.Event,
    done: threading.Event,
    timeout: float,
    seconds_after: float,
    outcome: dict[str, str],
    server_pid: int,
    cpu_marks: list[float],
) -> None:
    started = time.monotonic()
    try:
        while True:
            delivered.refresh(database)
            job = data(client.get(f"{API}/jobs/{jid}"))["attributes"]
            if job["state"] in ("succeeded", "failed", "cancelled"):
                outcome["state"] = job["state"]
                return
            if time.monotonic() - started > timeout:
                outcome["state"] = "timed out"
                return
            time.sleep(POLL_SECONDS)
    finally:
        send_done.set()
        cpu_marks.append(sum(tree_cpu(server_pid).values()))
        time.sleep(seconds_after)
        done.set()


def events_by_kind(database: Database) -> Counter[str]:
    with database.reader.connect() as connection:
        rows = connection.execute(text("SELECT kind, count(*) FROM tracking_events GROUP BY kind"))
        return Counter({str(kind): int(count) for kind, count in rows})


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=1000)[int(share * 1000) - 1] if len(values) > 1 else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--messages", type=int, default=100_000, help="subscribers sent to")
    parser.add_argument("--clients", type=int, default=20, help="concurrent recipients")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--click-share", type=float, default=0.3, help="clicks among hits")
    parser.add_argument("--sink", choices=["smtp-sink", "aiosmtpd"], default="smtp-sink")
    parser.add_argument("--log", type=Path, help="append the server's stderr (JSON logs) here")
    parser.add_argument(
        "--seconds-after", type=float, default=0, help="hits go on this long after the send"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="give up after (seconds)")
    args = parser.parse_args()
    print(
        f"tracking: {args.clients} clients during a send of {args.messages:,} messages, "
        f"{args.backend}, {args.workers} server process(es), sink {args.sink}; {machine()}"
    )
    with running_sink(args.sink) as sink, tempfile.TemporaryDirectory() as scratch:
        env = {
            "DRIPSTONE_SMTP_URL": f"smtp://127.0.0.1:{sink.port}",
            "DRIPSTONE_SECRET_KEY": SECRET,
        }
        if args.backend == "sqlite":
            env["DRIPSTONE_DATABASE_URL"] = f"sqlite:///{scratch}/dripstone.db"
        with (
            running_server(
                args.backend, args.workers, args.postgres_url, env=env, log_file=args.log
            ) as server,
            httpx.Client(base_url=server.base, headers=server.headers, timeout=300) as client,
        ):
            url = server.database_url or env["DRIPSTONE_DATABASE_URL"]
            database = Database(url.replace("postgresql://", "postgresql+psycopg://", 1))
            list_id = data(client.post(f"{API}/subscription_lists", json={"name": "bench"}))["id"]
            load(client, list_id, args.messages)
            mailing = {"subject": "News", "from": "news@example.com", "html_part": HTML}
            mailing_id = data(
                client.post(f"{API}/campaign_mailings", json={"campaign_mailing": mailing})
            )["id"]
            print(f"  loaded {args.messages:,} subscribers")
            cpu_marks = [sum(tree_cpu(server.root_pid).values())]
            own_before = _own_cpu()
            sent_before = sink.count
            body = {
                "campaign_mailing_id": mailing_id,
                "campaign_mailing_send": {
                    "sender_email": "bench@example.com",
                    "subscription_list_id": list_id,
                },
            }
            jid = data(client.post(f"{API}/campaign_mailing_sends", json=body))["jid"]
            delivered, outcome = Delivered(), dict[str, str]()
            send_done, done = threading.Event(), threading.Event()
            follower = threading.Thread(
                target=follow_send,
                args=(client, jid, database, delivered, send_done, done, args.timeout),
                kwargs={
                    "seconds_after": args.seconds_after,
                    "outcome": outcome,
                    "server_pid": server.root_pid,
                    "cpu_marks": cpu_marks,
                },
            )
            follower.start()
            hits = asyncio.run(
                recipients(
                    server.base,
                    args.clients,
                    args.click_share,
                    delivered,
                    # Without --seconds-after, the last few hits after the send count with it.
                    send_done if args.seconds_after else threading.Event(),
                    done,
                )
            )
            follower.join()
            cpu_marks.append(sum(tree_cpu(server.root_pid).values()))
            own_cpu = _own_cpu() - own_before
            sent = sink.count - sent_before
            recorded = events_by_kind(database)
            database.dispose()
    if outcome.get("state") != "succeeded":
        print(f"error: the send's job {outcome.get('state')}")
        raise SystemExit(1)
    answered: Counter[str] = Counter()
    width = 36
    for (name, phase), cpu in zip(
        hits.items(),
        (cpu_marks[1] - cpu_marks[0], cpu_marks[2] - cpu_marks[1])
        if args.seconds_after
        else (cpu_marks[2] - cpu_marks[0], 0.0),
        strict=True,
    ):
        if not phase.latencies:
            continue
        seconds = phase.ended - phase.started
        opens, clicks = phase.statuses["open", 200], phase.statuses["click", 302]
        answered.update(open=opens, click=clicks)
        others = {
            f"{kind} {status}": n
            for (kind, status), n in phase.statuses.items()
            if (kind, status) not in (("open", 200), ("click", 302))
        }
        print(f"  {name}:")
        rows = [
            ("tracking requests", f"{len(phase.latencies):,} in {seconds:.1f} s"),
            ("requests/s", f"{len(phase.latencies) / seconds:,.0f}"),
            ("latency p50", f"{percentile(phase.latencies, 0.5) * 1000:.1f} ms"),
            ("latency p90", f"{percentile(phase.latencies, 0.9) * 1000:.1f} ms"),
            ("latency p99", f"{percentile(phase.latencies, 0.99) * 1000:.1f} ms"),
            ("latency max", f"{max(phase.latencies) * 1000:.1f} ms"),
            ("answered opens (200) / clicks (302)", f"{opens:,} / {clicks:,}"),
            ("other answers", ", ".join(f"{k}: {n:,}" for k, n in others.items()) or "none"),
            ("transport errors", f"{phase.transport_errors:,}"),
            ("server CPU (user+sys, whole tree)", f"{cpu:.1f} s"),
            ("  per tracking request", f"{cpu / len(phase.latencies) * 1000:.2f} ms"),
        ]
        for label, value in rows:
            print(f"    {label:<{width}}  {value}")
    during = hits["during the send"]
    lost = sum(answered.values()) - sum(recorded[kind] for kind in answered)
    rows = [
        ("events recorded: opens / clicks", f"{recorded['open']:,} / {recorded['click']:,}"),
        ("answered hits not recorded (lost)", f"{lost:,}"),
        (
            "messages sent during the hits",
            f"{sent:,} ({sent / max(during.ended - during.started, 1e-9):,.0f}/s)",
        ),
        ("client CPU (this process)", f"{own_cpu:.1f} s"),
    ]
    for label, value in rows:
        print(f"  {label:<{width + 2}}  {value}")


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
