"""Create subscribers through POST /subscribers_bulk_create against a running server.

    .venv/bin/python bench/bulk_create.py [--backend sqlite|postgresql] [--total 100000]

Prints subscribers/s and the server's memory as the table grows.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from harness import Server, machine, running_server


def payload(start: int, size: int) -> dict[str, object]:
    return {
        "subscribers": [
            {
                "email": f"person{n}@example.com",
                "first_name": f"First{n}",
                "last_name": f"Last{n}",
                "custom_fields": [{"plan": "gold" if n % 2 else "silver"}],
            }
            for n in range(start, start + size)
        ]
    }


def load(server: Server, total: int, batch: int, clients: int, report: bool = True) -> float:
    """Create `total` subscribers in requests of `batch`; returns subscribers/s."""
    bodies = [payload(start, batch) for start in range(0, total, batch)]
    added = 0
    started = time.perf_counter()
    with httpx.Client(base_url=server.base, headers=server.headers, timeout=120) as client:

        def post(body: dict[str, object]) -> int:
            response = client.post("/v1/marketing/subscribers_bulk_create", json=body)
            response.raise_for_status()
            return int(response.json()["data"]["num_subscribers_added"])

        with ThreadPoolExecutor(clients) as pool:
            for done, count in enumerate(pool.map(post, bodies), start=1):
                added += count
                if report and done % max(1, len(bodies) // 10) == 0:
                    rate = added / (time.perf_counter() - started)
                    print(
                        f"  {added:>9,} subscribers  {rate:>8,.0f}/s"
                        f"  server RSS {server.memory_mb():6.1f} MB"
                    )
    elapsed = time.perf_counter() - started
    assert added == total, f"expected {total} new subscribers, the server added {added}"
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    args = parser.parse_args()
    print(
        f"bulk_create: {args.total:,} subscribers, {args.batch:,} per request, "
        f"{args.clients} clients, {args.workers} server processes, {args.backend}; {machine()}"
    )
    with running_server(args.backend, args.workers) as server:
        rate = load(server, args.total, args.batch, args.clients)
        print(
            f"result: {rate:,.0f} subscribers/s; server peak RSS {server.memory_mb('VmHWM'):.1f} MB"
        )


if __name__ == "__main__":
    main()
