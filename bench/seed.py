"""Fill a benchmark account with subscribers straight through SQL (the load is not what
these benchmarks measure; `bulk_create.py` measures that)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import psycopg


def seed_subscribers(database_url: str, sqlite_path: str, username: str, count: int) -> None:
    """Add `count` subscribers s1@example.com … to the account `username`."""
    now = datetime.now(UTC).replace(tzinfo=None)
    if database_url:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO subscribers (uuid, account_id, email, first_name, created_at,"
                " updated_at) SELECT gen_random_uuid()::text, a.id, 's' || g || '@example.com',"
                " 'S' || g, %s, %s FROM generate_series(1, %s) AS g, accounts AS a"
                " WHERE a.username = %s",
                (now, now, count, username),
            )
            conn.execute("VACUUM ANALYZE subscribers")
        return
    stamp = now.isoformat(" ", "microseconds")
    with sqlite3.connect(sqlite_path, timeout=60) as conn:
        conn.execute(
            "WITH RECURSIVE seq(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM seq WHERE x < ?)"
            " INSERT INTO subscribers (uuid, account_id, email, first_name, created_at,"
            " updated_at) SELECT lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4'"
            " || substr(hex(randomblob(2)), 2) || '-a' || substr(hex(randomblob(2)), 2) || '-'"
            " || hex(randomblob(6))), a.id, 's' || x || '@example.com', 'S' || x, ?, ?"
            " FROM seq, accounts AS a WHERE a.username = ?",
            (count, stamp, stamp, username),
        )
        conn.execute("ANALYZE")
