"""Server time of the subscribers and lists pages on an account of 1,000,000 subscribers.

    .venv/bin/python bench/dashboard.py [--total 1000000]

Subscribers are loaded straight through SQL (SQLite), a tenth of them on a list and with a
custom field; then each page is asked for 10 times in-process and the median is printed.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.seed import seed_subscribers
from tests.web.conftest import make_team, sign_in

from dripstone import migrations
from dripstone.app import create_app
from dripstone.config import load_settings
from dripstone.jobs.queue import run_tasks_inline

REPEAT = 10


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=1_000_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    path = folder / "dripstone.db"
    url = f"sqlite:///{path}"
    migrations.upgrade(url)
    settings = load_settings(
        data_dir=folder, database_url=url, queue_url="memory://", secret_key="x" * 40
    )
    app = create_app(settings)
    run_tasks_inline()
    from dripstone import db

    team = make_team(db.database())
    seed_subscribers("", str(path), team.account, args.total)
    with sqlite3.connect(path) as conn:
        account = conn.execute("SELECT id FROM accounts WHERE username = ?", (team.account,))
        account_id = account.fetchone()[0]
        conn.execute(
            "INSERT INTO subscription_lists (uuid, account_id, name, is_default, created_at,"
            " updated_at) VALUES ('00000000-0000-4000-8000-000000000001', ?, 'Tenth', 0,"
            " '2026-01-01', '2026-01-01')",
            (account_id,),
        )
        conn.execute(
            "INSERT INTO subscriptions (uuid, account_id, subscription_list_id, subscriber_id,"
            " created_at, updated_at) SELECT lower(hex(randomblob(16))), ?, l.id, s.id,"
            " s.created_at, s.created_at FROM subscribers s, subscription_lists l"
            " WHERE l.name = 'Tenth' AND s.id % 10 = 0",
            (account_id,),
        )
        conn.execute(
            "INSERT INTO subscriber_custom_field_types (uuid, account_id, name, created_at)"
            " VALUES ('00000000-0000-4000-8000-000000000002', ?, 'plan', '2026-01-01')",
            (account_id,),
        )
        conn.execute(
            "INSERT INTO subscriber_custom_field_values (subscriber_id, field_type_id, value)"
            " SELECT s.id, t.id, CASE WHEN s.id % 20 = 0 THEN 'gold' ELSE 'free' END"
            " FROM subscribers s, subscriber_custom_field_types t WHERE s.id % 10 = 0"
        )
        conn.execute("ANALYZE")
    with TestClient(app) as client:
        from dripstone.users.models import Role

        sign_in(client, team.emails[Role.VIEWER])
        first = client.get("/subscribers").text
        one = re.search(r'href="/subscribers/([0-9a-f-]{36})"', first)
        assert one is not None
        everyone = re.search(r'hx-get="/lists/([0-9a-f-]{36})/count"', client.get("/lists").text)
        assert everyone is not None
        everyone = everyone[1]
        deep = client.get("/subscribers", params={"before": args.total // 2}).text
        assert "subscribers on this page" in deep
        pages = {
            "/subscribers (first page)": ("/subscribers", {}),
            "/subscribers (middle, keyset)": ("/subscribers", {"before": args.total // 2}),
            "/subscribers?list=Tenth": (
                "/subscribers",
                {"list": "00000000-0000-4000-8000-000000000001"},
            ),
            "/subscribers?search=s999999 (one match)": ("/subscribers", {"search": "s999999"}),
            "/subscribers?search=s12 (many)": ("/subscribers", {"search": "s12"}),
            "/subscribers plan is gold": (
                "/subscribers",
                {"field": "plan", "op": "is", "terms": "gold", "join": "and"},
            ),
            "/subscribers/{id}": (f"/subscribers/{one[1]}", {}),
            "/lists": ("/lists", {}),
            "/lists/{All contacts}/count (fragment)": (f"/lists/{everyone}/count", {}),
            "/lists/{Tenth}/count (fragment)": (
                "/lists/00000000-0000-4000-8000-000000000001/count",
                {},
            ),
        }
        print(f"{args.total:,} subscribers, SQLite; median of {REPEAT}")
        for name, (target, params) in pages.items():
            times = []
            for _ in range(REPEAT):
                started = time.perf_counter()
                answer = client.get(target, params=params)
                times.append(time.perf_counter() - started)
                assert answer.status_code == 200, (name, answer.text[:500])
            print(f"  {name:45} {statistics.median(times) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
