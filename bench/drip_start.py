"""Start an `existing` drip campaign on a list of 1,000,000 subscribers.

    .venv/bin/python bench/drip_start.py [--backend sqlite|postgresql] [--subscribers 1000000]

Seeds the subscribers with SQL, then, against a real `dripstone serve --workers 2`, creates a
mailing and a campaign (trigger → delay 1 day → email) and times POST /start until every
enrollment exists, sampling the server's memory. Prints figures, not pass/fail.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

from harness import Server, machine, running_server
from seed import seed_subscribers

BASE = "/v1/marketing"


def count_enrollments(server: Server, sqlite_path: str) -> int:
    query = "SELECT count(*) FROM drip_enrollments"
    if server.database_url:
        with psycopg.connect(server.database_url) as conn:
            row = conn.execute(query).fetchone()
    else:
        with sqlite3.connect(sqlite_path, timeout=60) as conn:
            row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def create_campaign(client: httpx.Client, nodes_after_trigger: list[dict[str, object]]) -> str:
    """A mailing and a campaign on All contacts: trigger → the given nodes."""
    mailing = client.post(
        f"{BASE}/campaign_mailings",
        json={
            "campaign_mailing": {
                "subject": "Hello {{ first_name }}",
                "from": "news@example.com",
                "html_part": '<p>Hi {{ first_name }}, <a href="https://example.com/a">read</a>.</p>',
            }
        },
    ).json()["data"]["id"]
    everyone = next(
        lst["id"]
        for lst in client.get(f"{BASE}/subscription_lists").json()["data"]
        if lst["attributes"]["is_default"]
    )
    nodes = [{"id": "t", "type": "trigger"}]
    for index, spec in enumerate(nodes_after_trigger):
        data = dict(spec)
        kind = str(data.pop("type"))
        if kind == "email":
            data["campaign_mailing_id"] = mailing
        nodes.append({"id": f"n{index}", "type": kind, "data": data})
    edges = [{"source": a["id"], "target": b["id"]} for a, b in itertools.pairwise(nodes)]

    response = client.post(
        f"{BASE}/drip_campaigns",
        json={
            "drip_campaign": {
                "name": "Bench",
                "subscription_list_id": everyone,
                "start_trigger": "existing",
                "drip_campaign_nodes": json.dumps({"nodes": nodes, "edges": edges}),
            }
        },
    )
    response.raise_for_status()
    return str(response.json()["data"]["id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--log", type=Path, help="append the server's stderr (JSON logs) here")
    args = parser.parse_args()
    print(f"drip_start: {args.subscribers:,} subscribers, {args.backend}; {machine()}")
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    env = (
        {}
        if args.backend == "postgresql"
        else {"DRIPSTONE_DATABASE_URL": f"sqlite:///{sqlite_path}"}
    )
    with running_server(args.backend, workers=2, env=env, log_file=args.log) as server:
        started = time.perf_counter()
        seed_subscribers(server.database_url, sqlite_path, "bench", args.subscribers)
        print(f"  seeded in {time.perf_counter() - started:.1f} s (not timed below)")
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=120) as client:
            campaign = create_campaign(
                client, [{"type": "delay", "amount": 1, "unit": "days"}, {"type": "email"}]
            )
            memory_before = server.memory_mb()
            started = time.perf_counter()
            response = client.post(f"{BASE}/drip_campaigns/{campaign}/start")
            response.raise_for_status()
            jids = response.json()["data"]["jids"]
            answered = time.perf_counter() - started
            peak = memory_before
            while True:
                peak = max(peak, server.memory_mb())
                states = [
                    client.get(f"{BASE}/jobs/{jid}").json()["data"]["attributes"]["state"]
                    for jid in jids
                ]
                if all(state in ("succeeded", "failed") for state in states):
                    break
                time.sleep(0.2)
            elapsed = time.perf_counter() - started
        enrolled = count_enrollments(server, sqlite_path)
        hwm = server.memory_mb("VmHWM")
    print(f"  POST /start answered in {answered * 1000:.0f} ms with {len(jids)} jids")
    print(
        f"  every enrollment exists after {elapsed:.1f} s ({enrolled:,} enrollments, "
        f"{enrolled / elapsed:,.0f}/s); job states: {sorted(set(states))}"
    )
    print(
        f"  server memory (largest process): {memory_before:.0f} MB before, "
        f"{peak:.0f} MB peak sampled, VmHWM {hwm:.0f} MB"
    )


if __name__ == "__main__":
    main()
