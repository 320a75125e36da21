"""Server time of a drip campaign's per-node counts with 1,000,000 enrollments.

    .venv/bin/python bench/drip_nodes.py [--backend sqlite|postgresql] [--enrollments 1000000]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Against a real `dripstone serve`: creates a campaign on All contacts (trigger → email n0 →
delay n1 → email n2 → delay n3 → email n4 → exit n5), then seeds with set-based SQL
`--enrollments` subscribers, each enrolled: four in ten waiting at n1, three in ten at n3,
three in ten completed, each with the node visits of its path, and the kept per-node counts.
A user signs in through the form; `GET /drips/{id}/node-counts` (polled by the campaign page)
and the campaign page itself are then each asked for 10 times after one warm-up. Prints the
median and the slowest of the server's own time (its `Server-Timing` header).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from analytics import Loader
from drip_start import BASE, create_campaign
from harness import DEFAULT_POSTGRES, machine, running_server
from pages import signed_in, time_page
from seed import seed_subscribers

STAGE = "CASE WHEN s.id % 10 < 4 THEN 0 WHEN s.id % 10 < 7 THEN 1 ELSE 2 END"


def seed_enrollments(loader: Loader, campaign_id: str) -> None:
    """Everyone enrolled and spread over the campaign's path, with their node visits."""
    now = datetime.now(UTC)
    stamp, later = loader.stamp(now), loader.stamp(now + timedelta(days=1))
    with loader.connection() as conn:
        conn.execute(
            loader.sql(
                "INSERT INTO drip_enrollments (account_id, drip_campaign_id, subscriber_id,"
                " state, node_id, arrived_at, next_run_at, enrolled_at, finished_at)"
                f" SELECT s.account_id, c.id, s.id,"
                f" CASE WHEN {STAGE} = 2 THEN 'completed' ELSE 'active' END,"
                f" CASE {STAGE} WHEN 0 THEN 'n1' WHEN 1 THEN 'n3' ELSE 'n5' END,"
                f" ?, ?, ?, CASE WHEN {STAGE} = 2 THEN ? END"
                " FROM subscribers s JOIN drip_campaigns c ON c.account_id = s.account_id"
                " WHERE c.uuid = ?"
            ),
            (stamp, later, stamp, stamp, campaign_id),
        )
        conn.execute(
            loader.sql(
                "WITH path(node, stage) AS (VALUES ('t', 0), ('n0', 0), ('n1', 0),"
                " ('n2', 1), ('n3', 1), ('n4', 2), ('n5', 2))"
                " INSERT INTO drip_node_visits (enrollment_id, node_id, drip_campaign_id,"
                " entered_at) SELECT e.id, path.node, e.drip_campaign_id, ?"
                " FROM drip_enrollments e JOIN path ON path.stage <="
                " CASE e.node_id WHEN 'n1' THEN 0 WHEN 'n3' THEN 1 ELSE 2 END"
            ),
            (stamp,),
        )
        # The kept counts, as the migration that added them fills them from what is there.
        conn.execute(
            "INSERT INTO drip_node_counters (drip_campaign_id, node_id, entered, waiting, exited)"
            " SELECT v.drip_campaign_id, v.node_id, count(*), (SELECT count(*)"
            " FROM drip_enrollments e WHERE e.drip_campaign_id = v.drip_campaign_id"
            " AND e.node_id = v.node_id AND e.state = 'active'), 0"
            " FROM drip_node_visits v GROUP BY v.drip_campaign_id, v.node_id"
        )
        conn.execute(
            loader.sql("UPDATE drip_campaigns SET state = 'started' WHERE uuid = ?"),
            (campaign_id,),
        )
        if loader.postgres_url:
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE")
        else:
            conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--enrollments", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    total = args.enrollments
    print(f"drip_nodes: {total:,} enrollments on one campaign, {args.backend}; {machine()}")
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    env = {"DRIPSTONE_DATABASE_URL": f"sqlite:///{sqlite_path}"} if args.backend == "sqlite" else {}
    with (
        running_server(args.backend, postgres_url=args.postgres_url, env=env) as server,
        httpx.Client(base_url=server.base, headers=server.headers, timeout=600) as api,
    ):
        database_url = server.database_url or f"sqlite:///{sqlite_path}"
        campaign = create_campaign(
            api,
            [
                {"type": "email"},
                {"type": "delay", "amount": 1, "unit": "days"},
                {"type": "email"},
                {"type": "delay", "amount": 1, "unit": "weeks"},
                {"type": "email"},
                {"type": "exit"},
            ],
        )
        started = time.perf_counter()
        seed_subscribers(server.database_url, sqlite_path, "bench", total)
        seed_enrollments(Loader(server, sqlite_path), campaign)
        print(f"  seeded in {time.perf_counter() - started:.0f} s")
        attributes = api.get(f"{BASE}/drip_campaigns/{campaign}").json()["data"]["attributes"]
        print(
            f"  {attributes['subscriber_count']:,} waiting,"
            f" {attributes['subscriber_completed_count']:,} completed"
        )
        client = signed_in(server.base, database_url)
        pages = [
            (client, path) for path in (f"/drips/{campaign}/node-counts", f"/drips/{campaign}")
        ]
        # The pages and the API answer that count every campaign's waiting and completed.
        pages += [(client, "/drips"), (client, "/"), (api, f"{BASE}/drip_campaigns")]
        for asked, path in pages:
            status, median, slowest, whole = time_page(asked, path)
            print(
                f"  GET {path:<60} {status:>4} server median {median:.1f} ms,"
                f" slowest {slowest:.1f} ms, whole {whole:.1f} ms"
            )


if __name__ == "__main__":
    main()
