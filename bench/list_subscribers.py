"""Page through a large account with GET /subscribers?items=1000.

    .venv/bin/python bench/list_subscribers.py [--backend sqlite|postgresql] [--total 1000000]

Loads the account through the bulk endpoint, then prints the latency of page 1 and of a
deep page (500) for each sort order.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
import psycopg

from bulk_create import load
from harness import machine, running_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    print(f"list_subscribers: {args.total:,} subscribers, items=1000, {args.backend}; {machine()}")
    with running_server(args.backend, workers=2) as server:
        rate = load(server, args.total, 1000, 4, report=False)
        print(f"  loaded at {rate:,.0f} subscribers/s")
        if args.backend == "postgresql":
            # What autovacuum does shortly after a large import: without visibility-map and
            # planner statistics, PostgreSQL pages by sequential scan and sort.
            started = time.perf_counter()
            with psycopg.connect(server.database_url, autocommit=True) as conn:
                conn.execute("VACUUM ANALYZE subscribers")
            print(f"  VACUUM ANALYZE subscribers took {time.perf_counter() - started:.1f} s")
        deep = min(500, args.total // 1000)
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as client:
            for order_by in ("created_at", "email", "last_name"):
                for page in (1, deep):
                    url = f"/v1/marketing/subscribers?items=1000&page={page}&order_by={order_by}"
                    client.get(url).raise_for_status()  # warm the cache once
                    timings = []
                    for _ in range(args.repeat):
                        started = time.perf_counter()
                        response = client.get(url)
                        timings.append((time.perf_counter() - started) * 1000)
                        response.raise_for_status()
                        assert len(response.json()["data"]) == 1000
                    timings.sort()
                    print(
                        f"  order_by={order_by:<10} page {page:>4}: median "
                        f"{statistics.median(timings):6.1f} ms, "
                        f"p95 {timings[int(len(timings) * 0.95) - 1]:6.1f} ms"
                    )


if __name__ == "__main__":
    main()
