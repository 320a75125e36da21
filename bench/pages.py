"""Server time of every dashboard page on an account with a million subscribers.

    .venv/bin/python bench/pages.py [--backend sqlite|postgresql] [--subscribers 1000000]
        [--postgres-url postgresql://postgres@127.0.0.1:5432/test]

The account is loaded as `analytics.py` loads it: `--subscribers` subscribers, each with one
delivered delivery of one send (three in ten opened, one in ten clicked), all of them on one
list. A user signs in through the form; each page is then asked for 10 times after one
warm-up request. Prints, per page, the median and the slowest of the server's own time (its
`Server-Timing` header: from the request's arrival until the answer begins) and the median
time until the whole page arrived over loopback.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from analytics import BASE, Loader, load, prepare, rebuild_counters
from harness import DEFAULT_POSTGRES, DRIPSTONE, machine, running_server

REPEAT = 10
PASSWORD = "bench password, long enough"
OWN_PASSWORD = "--password-stdin"
SERVER_TIMING = re.compile(r"app;dur=([0-9.]+)")


def add_everyone_to_a_list(loader: Loader, list_id: str) -> None:
    with loader.connection() as conn:
        conn.execute(
            loader.sql(
                "INSERT INTO subscriptions (uuid, account_id, subscription_list_id,"
                " subscriber_id, created_at, updated_at)"
                " SELECT s.uuid, s.account_id, l.id, s.id, s.created_at, s.created_at"
                " FROM subscribers s, subscription_lists l WHERE l.uuid = ?"
                " AND s.account_id = l.account_id"
            ),
            (list_id,),
        )
        if loader.postgres_url:
            conn.commit()
            conn.autocommit = True
            conn.execute("VACUUM ANALYZE subscriptions")
        else:
            conn.execute("ANALYZE")


def signed_in(base: str, database_url: str) -> httpx.Client:
    env = {"DRIPSTONE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"}
    subprocess.run(
        [DRIPSTONE, "users", "create", "ann", "ann@example.com", "--role=owner", OWN_PASSWORD],
        input=PASSWORD,
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    client = httpx.Client(base_url=base, timeout=120, follow_redirects=True)
    form = client.get("/sign-in").text
    token = re.search(r'name="form_token" value="([^"]+)"', form)
    assert token is not None
    answer = client.post(
        "/sign-in",
        data={"email": "ann@example.com", "password": PASSWORD, "form_token": token[1]},
    )
    answer.raise_for_status()
    return client


def pages(api: httpx.Client, send_id: str, list_id: str) -> list[str]:
    subscriber = api.get(f"{BASE}/subscribers", params={"items": 1}).json()["data"][0]["id"]
    lists = api.get(f"{BASE}/subscription_lists").json()["data"]
    default = next(item["id"] for item in lists if item["attributes"]["name"] == "All contacts")
    return [
        "/",
        "/subscribers",
        "/subscribers?search=r999999",
        f"/subscribers?list={list_id}",
        f"/subscribers/{subscriber}",
        "/imports",
        "/exports",
        "/lists",
        f"/lists/{list_id}/count",
        f"/lists/{default}/count",
        "/mailings",
        f"/mailings/{mailing_of(api, send_id)}",
        "/sends",
        f"/sends/{send_id}",
        f"/sends/{send_id}/progress",
        "/drips",
        "/settings",
        "/settings/audit",
    ]


def mailing_of(api: httpx.Client, send_id: str) -> str:
    send = api.get(f"{BASE}/campaign_mailing_sends/{send_id}").json()["data"]
    return str(send["attributes"]["campaign_mailing_id"])


def time_page(
    client: httpx.Client, path: str, form: dict[str, str] | None = None
) -> tuple[int, float, float, float]:
    """Status, median and slowest server time, median whole-page time (ms). With `form`,
    the page is the answer to posting it."""

    def ask() -> httpx.Response:
        return client.get(path) if form is None else client.post(path, data=form)

    ask()
    server, whole, status = [], [], 0
    for _ in range(REPEAT):
        started = time.perf_counter()
        answer = ask()
        whole.append((time.perf_counter() - started) * 1000)
        status = answer.status_code
        found = SERVER_TIMING.search(answer.headers.get("server-timing", ""))
        server.append(float(found[1]) if found else float("nan"))
    return status, statistics.median(server), max(server), statistics.median(whole)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    args = parser.parse_args()
    total = args.subscribers
    print(f"pages: an account of {total:,} subscribers on one list, {args.backend}; {machine()}")
    sqlite_path = str(Path(tempfile.mkdtemp(prefix="dripstone-bench-db-")) / "dripstone.db")
    env = {"DRIPSTONE_DATABASE_URL": f"sqlite:///{sqlite_path}"} if args.backend == "sqlite" else {}
    with (
        running_server(args.backend, postgres_url=args.postgres_url, env=env) as server,
        httpx.Client(base_url=server.base, headers=server.headers, timeout=600) as api,
    ):
        database_url = server.database_url or f"sqlite:///{sqlite_path}"
        send_id = prepare(api)
        loader = Loader(server, sqlite_path)
        load(loader, send_id, total)
        big = api.get(f"{BASE}/subscription_lists").json()["data"]
        list_id = next(item["id"] for item in big if item["attributes"]["name"] == "Big")
        add_everyone_to_a_list(loader, list_id)
        rebuild_counters(database_url)
        # The rows were loaded behind the services' back: count the lists as they stand.
        started = time.perf_counter()
        subprocess.run(
            [DRIPSTONE, "recount"],
            env={"DRIPSTONE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            check=True,
            capture_output=True,
        )
        print(f"  dripstone recount: {time.perf_counter() - started:.1f} s")
        client = signed_in(server.base, database_url)
        columns = ("status", "server median", "slowest", "whole page")
        print(f"  {'page':<48} " + " ".join(f"{c:>{len(c) + 1}}" for c in columns))
        timed: list[tuple[str, dict[str, str] | None]] = [
            (path, None) for path in pages(api, send_id, list_id)
        ]
        mailing = f"/mailings/{mailing_of(api, send_id)}"
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(mailing).text)
        assert token is not None
        # The confirmation before a send: it counts who would receive it (nothing is sent).
        confirm = {"csrf_token": token[1], "to": f"list:{list_id}", "when": "now"}
        timed.append((f"{mailing}/send", confirm))
        for path, form in timed:
            status, median, slowest, whole = time_page(client, path, form)
            label = ("POST " if form else "") + path
            print(
                f"  {label[:48]:<48} {status:>6} {median:>11.1f} ms {slowest:>6.1f} ms"
                f" {whole:>8.1f} ms"
            )


if __name__ == "__main__":
    main()
