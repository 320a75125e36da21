"""The dashboard's sends pages on one large send, through a real `dripstone serve`.

    .venv/bin/python bench/send_pages.py [--backend sqlite|postgresql] [--deliveries 1000000]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

Loads the send as bench/analytics.py does (one delivery per subscriber, 30 % opened, 10 %
clicked over 5 links, straight into the database), signs a user in through the form, and
prints the median of 10 requests of each page: the sends list, the send's page (first and a
later page of deliveries), its progress fragment, who clicked a link (first and a later page).
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from analytics import Loader, load, median_ms, prepare, rebuild_counters
from dripstone import db
from dripstone.accounts.models import Account
from dripstone.config import load_settings
from dripstone.users import service as users
from dripstone.users.models import Role
from harness import DEFAULT_POSTGRES, machine, running_server

PASSWORD = "a long enough password for the bench"


def sign_in(client: httpx.Client, database_url: str) -> None:
    url = load_settings(database_url=database_url).resolved_database_url
    with db.configure(url).transaction() as session:
        account = session.scalars(select(Account).where(Account.username == "bench")).one()
        users.create_user(session, account, "viewer", "viewer@bench.example", Role.VIEWER, PASSWORD)
    form = client.get("/sign-in")
    token = re.search(r'name="form_token" value="([^"]+)"', form.text)
    assert token is not None
    signed = client.post(
        "/sign-in",
        data={"email": "viewer@bench.example", "password": PASSWORD, "form_token": token[1]},
    )
    assert signed.status_code == 303, signed.text


def later(client: httpx.Client, path: str, pages: int) -> str:
    """The path of page `pages + 1`, following the page's own "next" links."""
    for _ in range(pages):
        found = re.search(r'href="([^"]+\?after=[^"]+)"', client.get(path).text)
        assert found is not None, path
        path = found[1]
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--deliveries", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    total = args.deliveries
    print(f"sends pages: one send of {total:,} deliveries, {args.backend}; {machine()}")
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    env = {"DRIPSTONE_DATABASE_URL": f"sqlite:///{sqlite_path}"} if args.backend == "sqlite" else {}
    with running_server(args.backend, postgres_url=args.postgres_url, env=env) as server:
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=600) as api:
            send_id = prepare(api)
        started = time.perf_counter()
        load(Loader(server, sqlite_path), send_id, total)
        print(f"  loaded in {time.perf_counter() - started:.1f} s")
        database_url = server.database_url or f"sqlite:///{sqlite_path}"
        print(f"  counters.rebuild: {rebuild_counters(database_url):.1f} s")
        with httpx.Client(base_url=server.base, timeout=600) as client:
            sign_in(client, database_url)
            send = f"/sends/{send_id}"
            timed = [
                ("sends list", "/sends"),
                ("send page, first deliveries", send),
                ("send page, deliveries page 100", later(client, send, 99)),
                ("progress fragment", f"{send}/progress"),
                ("who clicked link 1, first page", f"{send}/links/1"),
                ("who clicked link 1, page 50", later(client, f"{send}/links/1", 49)),
            ]
            for label, path in timed:
                ms = median_ms(lambda path=path: client.get(path))
                print(f"  {label:<36} median {ms:8.1f} ms")


if __name__ == "__main__":
    main()
