"""The `dripstone` command as users and scripts run it: real processes, a real HTTP server."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port

DRIPSTONE = str(Path(sys.executable).parent / "dripstone")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A fresh machine: nothing set but the data directory (SQLite, generated secret)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIPSTONE_")}
    return {**clean, "DRIPSTONE_DATA_DIR": str(tmp_path / "data")}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DRIPSTONE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [DRIPSTONE, "serve", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((tmp_path / "serve.log").read_text()) from None
            time.sleep(0.1)
    yield base
    process.terminate()
    process.wait(timeout=30)


def test_accounts_create_prints_a_key_on_the_last_line_that_works_against_the_api(
    env: dict[str, str], server: str
) -> None:
    created = run(env, "accounts", "create", "acme")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    headers = {"authorization": f"Token token={key}"}

    listed = httpx.get(f"{server}/v1/orca/acme/subscribers", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == {"data": []}
    assert listed.headers["x-request-id"]

    bearer = httpx.get(
        f"{server}/v1/marketing/subscription_lists", headers={"Authorization": f"Bearer {key}"}
    )
    assert [lst["attributes"]["name"] for lst in bearer.json()["data"]] == ["All contacts"]


def test_rotating_keys_new_key_works_and_revoked_key_is_refused(
    env: dict[str, str], server: str
) -> None:
    old = run(env, "accounts", "create", "acme").stdout.strip().splitlines()[-1]
    new = run(env, "keys", "create", "acme").stdout.strip().splitlines()[-1]
    assert new != old
    old_prefix, new_prefix = (key[: len("ds_") + 8] for key in (old, new))
    listing = run(env, "keys", "list", "acme").stdout
    assert old_prefix in listing
    assert new_prefix in listing
    assert old not in listing
    assert new not in listing

    revoked = run(env, "keys", "revoke", "acme", old_prefix)
    assert revoked.returncode == 0, revoked.stderr

    url = f"{server}/v1/orca/acme/subscribers"
    assert httpx.get(url, headers={"authorization": f"Token token={new}"}).status_code == 200
    refused = httpx.get(url, headers={"authorization": f"Token token={old}"})
    assert refused.status_code == 401
    assert refused.json()["code"] == "unauthorized"


def test_a_second_account_with_the_same_name_is_refused(env: dict[str, str]) -> None:
    assert run(env, "accounts", "create", "acme").returncode == 0
    again = run(env, "accounts", "create", "acme")
    assert again.returncode == 1
    assert "already exists" in again.stderr
    assert again.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRIPSTONE_PUBLIC_URL", "mail.example.com"),
        ("DRIPSTONE_DATABASE_URL", "mysql://localhost/x"),
        ("DRIPSTONE_QUEUE_URL", "amqp://localhost"),
        ("DRIPSTONE_SECRET_KEY", "short"),
        ("DRIPSTONE_JOB_BATCH_SIZE", "many"),
        ("DRIPSTONE_SMTP_URL", "http://relay.example.com"),
        ("DRIPSTONE_RETRY_BASE_SECONDS", "0"),
        ("DRIPSTONE_DKIM_SELECTOR", "mail2026"),  # without the domain and key file
    ],
)
def test_a_bad_setting_stops_start_up_with_one_line_naming_the_variable(
    env: dict[str, str], variable: str, value: str
) -> None:
    result = run({**env, variable: value}, "migrate")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert variable in lines[0]


def run_with_input(env: dict[str, str], stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DRIPSTONE, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _signs_in(env: dict[str, str], email: str, password: str) -> bool:
    """Checks the password as the dashboard will, against the database the CLI wrote."""
    script = (
        "import sys\n"
        "from dripstone import db\n"
        "from dripstone.config import load_settings\n"
        "from dripstone.users import service\n"
        "database = db.configure(load_settings().resolved_database_url)\n"
        "with database.transaction() as session:\n"
        "    sys.exit(0 if service.verify_password(session, sys.argv[1], sys.argv[2]) else 1)\n"
    )
    checked = subprocess.run(
        [sys.executable, "-c", script, email, password], env=env, timeout=120, check=False
    )
    return checked.returncode == 0


def test_users_are_created_listed_reset_and_disabled_from_the_command_line(
    env: dict[str, str],
) -> None:
    assert run(env, "accounts", "create", "acme").returncode == 0

    created = run(env, "users", "create", "ann", "Ann@Example.com", "--role", "owner")
    assert created.returncode == 0, created.stderr
    generated = created.stdout.strip().splitlines()[-1]
    assert len(generated) >= 20
    assert _signs_in(env, "ann@example.com", generated)

    given = run_with_input(
        env,
        "a passphrase typed by bob\n",
        "users",
        "create",
        "bob",
        "bob@example.com",
        "--role",
        "viewer",
        "--account",
        "acme",
        "--password-stdin",
    )
    assert given.returncode == 0, given.stderr
    assert "a passphrase typed by bob" not in given.stdout + given.stderr
    assert _signs_in(env, "bob@example.com", "a passphrase typed by bob")

    listing = run(env, "users", "list")
    assert listing.returncode == 0, listing.stderr
    for shown in ("ann@example.com", "owner", "bob@example.com", "viewer", "acme"):
        assert shown in listing.stdout
    assert generated not in listing.stdout

    reset = run(env, "users", "reset", "bob@example.com")
    assert reset.returncode == 0, reset.stderr
    new_password = reset.stdout.strip().splitlines()[-1]
    assert not _signs_in(env, "bob@example.com", "a passphrase typed by bob")
    assert _signs_in(env, "bob@example.com", new_password)

    disabled = run(env, "users", "disable", "BOB@example.com")
    assert disabled.returncode == 0, disabled.stderr
    assert not _signs_in(env, "bob@example.com", new_password)
    assert "yes" in next(
        line for line in run(env, "users", "list").stdout.splitlines() if "bob@" in line
    )


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("--account", "nope"), None, "no account named 'nope'"),
        ((), "", "password is empty"),
        ((), "short\n", "too weak"),
        (("--role", "admin"), None, "admin"),
    ],
)
def test_users_create_refuses_bad_input_with_exit_code_2_and_no_traceback(
    env: dict[str, str], args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    assert run(env, "accounts", "create", "acme").returncode == 0
    command = ["users", "create", "ann", "ann@example.com"]
    command += [] if "--role" in args else ["--role", "editor"]
    command += [*args, *([] if stdin is None else ["--password-stdin"])]
    refused = run_with_input(env, stdin or "", *command)
    assert refused.returncode == 2
    assert message in refused.stderr
    assert "Traceback" not in refused.stderr
    assert refused.stdout == ""
    assert "ann@example.com" not in run(env, "users", "list").stdout


def test_a_taken_address_and_an_unknown_user_are_refused_with_exit_code_2(
    env: dict[str, str],
) -> None:
    assert run(env, "accounts", "create", "acme").returncode == 0
    assert run(env, "accounts", "create", "globex").returncode == 0
    unnamed = run(env, "users", "create", "ann", "ann@example.com", "--role", "owner")
    assert unnamed.returncode == 2
    assert "--account" in unnamed.stderr

    first = run(
        env, "users", "create", "ann", "ann@example.com", "--role", "owner", "--account", "acme"
    )
    assert first.returncode == 0, first.stderr
    taken = run(
        env, "users", "create", "ann", "ANN@example.com", "--role", "viewer", "--account", "globex"
    )
    assert taken.returncode == 2
    assert "already exists" in taken.stderr
    assert "Traceback" not in taken.stderr

    for command in (("disable", "nobody@example.com"), ("reset", "nobody@example.com")):
        unknown = run(env, "users", *command)
        assert unknown.returncode == 2
        assert "no user with the address nobody@example.com" in unknown.stderr


def test_a_change_through_the_served_api_is_in_the_audit_log(
    env: dict[str, str], server: str
) -> None:
    key = run(env, "accounts", "create", "acme").stdout.strip().splitlines()[-1]
    headers = {"authorization": f"Token token={key}"}
    created = httpx.post(
        f"{server}/v1/orca/acme/subscribers",
        json={"subscriber": {"email": "ann@example.com"}},
        headers=headers,
    )
    assert created.status_code == 200, created.text
    events = httpx.get(f"{server}/v1/marketing/audit_events", headers=headers).json()["data"]
    assert [e["attributes"]["action"] for e in events] == ["POST /subscribers"]
    assert events[0]["attributes"]["object_ids"] == {"id": created.json()["data"]["id"]}
    assert events[0]["attributes"]["actor"] == key[: len("ds_") + 8]


def test_import_adds_a_csv_to_a_list_and_says_where_the_rejected_rows_are(
    env: dict[str, str], server: str, tmp_path: Path
) -> None:
    key = run(env, "accounts", "create", "acme").stdout.strip().splitlines()[-1]
    headers = {"authorization": f"Token token={key}"}
    base = f"{server}/v1/orca/acme"
    httpx.post(f"{base}/subscription_lists", json={"name": "Members"}, headers=headers)
    people = tmp_path / "people.csv"
    people.write_text(
        "email,first_name,city\nann@example.com,Ann,Oslo\nbad-address,Bob,Rome\n"
        "cy@example.com,Cy,\n",
        encoding="utf-8",
    )

    imported = run(env, "import", str(people), "--list", "Members")
    assert imported.returncode == 0, imported.stderr
    lines = imported.stdout.strip().splitlines()
    assert lines[0] == "added 2, updated 0, skipped 0, rejected 1"
    rejected = Path(lines[1].removeprefix("rejected rows and reasons: "))
    assert (
        rejected.read_text(encoding="utf-8")
        .splitlines()[1]
        .startswith("3,email: not a valid email address")
    )
    members = httpx.get(f"{base}/subscription_lists", headers=headers).json()["data"]
    members_id = next(m["id"] for m in members if m["attributes"]["name"] == "Members")
    listed = httpx.get(
        f"{base}/subscribers", params={"subscription_list_id": members_id}, headers=headers
    ).json()["data"]
    assert sorted(s["attributes"]["email"] for s in listed) == ["ann@example.com", "cy@example.com"]

    people.write_text("email,first_name\nann@example.com,Annie\n", encoding="utf-8")
    again = run(env, "import", str(people), "--list", "Members", "--update-existing")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "added 0, updated 1, skipped 0, rejected 0"


def test_import_refuses_a_file_without_an_email_column_and_imports_nothing(
    env: dict[str, str], tmp_path: Path
) -> None:
    run(env, "accounts", "create", "acme")
    people = tmp_path / "people.csv"
    people.write_text("name,city\nAnn,Oslo\n", encoding="utf-8")
    refused = run(env, "import", str(people), "--list", "All contacts")
    assert refused.returncode == 1
    assert "no email column" in refused.stderr
    assert refused.stdout == ""
    run(env, "accounts", "create", "globex")
    ambiguous = run(env, "import", str(people), "--list", "All contacts")
    assert ambiguous.returncode == 1
    assert "--account" in ambiguous.stderr


def test_recount_puts_a_list_count_right_and_names_the_list_it_fixed(
    env: dict[str, str], server: str
) -> None:
    key = run(env, "accounts", "create", "acme").stdout.strip().splitlines()[-1]
    headers = {"authorization": f"Token token={key}"}
    base = f"{server}/v1/orca/acme"
    httpx.post(f"{base}/subscription_lists", json={"name": "Members"}, headers=headers)
    lists = httpx.get(f"{base}/subscription_lists", headers=headers).json()["data"]
    members_id = next(m["id"] for m in lists if m["attributes"]["name"] == "Members")
    people = [{"email": f"p{n}@example.com"} for n in range(3)]
    body = {"subscribers": people, "subscription_list_id": members_id}
    assert httpx.post(f"{base}/subscribers_bulk_create", json=body, headers=headers).is_success
    # Rows written behind the service's back (a restore, a hand edit): the kept count is stale.
    database = Path(env["DRIPSTONE_DATA_DIR"]) / "dripstone.db"
    with sqlite3.connect(database) as conn:
        conn.execute(
            "UPDATE subscriptions SET unsubscribed_at = '2026-01-01 00:00:00.000000'"
            " WHERE subscriber_id = (SELECT min(id) FROM subscribers)"
        )

    def counts() -> dict[str, int]:
        found = httpx.get(f"{base}/subscription_lists", headers=headers).json()["data"]
        return {m["attributes"]["name"]: m["attributes"]["subscriber_count"] for m in found}

    assert counts() == {"All contacts": 3, "Members": 3}

    fixed = run(env, "recount")
    assert fixed.returncode == 0, fixed.stderr
    lines = fixed.stdout.strip().splitlines()
    assert lines[0].startswith("Members (account ")
    assert lines[0].endswith("members 3 -> 2, reachable 3 -> 2")
    assert lines[-1] == "recounted 2 lists, 1 put right"
    assert counts() == {"All contacts": 3, "Members": 2}

    again = run(env, "recount", "--account", "acme")
    assert again.stdout.strip() == "recounted 2 lists, 0 put right"
