"""The `dripstone` command: serve, worker, migrate, accounts, keys, users, CSV import and
recounting the lists."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import dripstone.tasks  # noqa: F401  (registers every domain: account set-up, tasks, job steps)
from dripstone import db, migrations
from dripstone.accounts import service as accounts
from dripstone.accounts.models import Account
from dripstone.config import ConfigError, Settings, load_settings
from dripstone.db import AccountScope
from dripstone.errors import DripstoneError, Invalid
from dripstone.jobs.models import JobState
from dripstone.jobs.service import get_job
from dripstone.logs import configure_logging
from dripstone.subscribers import counts, importing
from dripstone.subscribers.models import SubscriptionList
from dripstone.users import service as users
from dripstone.users.models import Role

app = typer.Typer(
    help="Dripstone: self-hosted email marketing with drip campaigns.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Create accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(
    help="Create, list and disable dashboard users; reset their passwords.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
err = Console(stderr=True, soft_wrap=True)


def _settings() -> Settings:
    try:
        settings = load_settings()
        settings.resolved_secret_key  # noqa: B018  (creates it on first run)
    except ConfigError as exc:
        err.print(f"[red]configuration error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    return settings


@contextmanager
def _transaction(settings: Settings) -> Iterator[Session]:
    migrations.upgrade(settings.resolved_database_url)
    database = db.configure(settings.resolved_database_url)
    try:
        with database.transaction() as session:
            yield session
    except DripstoneError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="server processes (one per core uses them all)")
    ] = 1,
) -> None:
    """Migrate the database, then serve the API; each server process also consumes the queue."""
    import uvicorn

    settings = _settings()
    migrations.upgrade(settings.resolved_database_url)
    err.print(
        f"Dripstone serving on http://{host}:{port} with {workers} process(es); "
        f"data in {settings.data_dir.resolve()}. Stop with Ctrl-C."
    )
    uvicorn.run(
        "dripstone.app:embedded_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        # A worker busy sending can be slow to answer the supervisor's ping; the default
        # 5 s made uvicorn kill and restart healthy workers under load.
        timeout_worker_healthcheck=60,
    )


@app.command()
def worker(
    workers: Annotated[int | None, typer.Option(help="worker threads")] = None,
) -> None:
    """Consume the job queue only (scaled-out mode: run any number of these)."""
    from dripstone.app import configure_runtime
    from dripstone.jobs.queue import create_consumer
    from dripstone.jobs.service import recover_jobs

    settings = _settings()
    migrations.upgrade(settings.resolved_database_url)
    configure_runtime(settings)
    from dripstone.jobs.ticker import Ticker
    from dripstone.leases import Heartbeat

    recover_jobs(db.database())
    err.print(
        f"Dripstone worker consuming queue {settings.queue_name} on "
        f"{settings.resolved_queue_url.split('@')[-1]}"
    )
    Heartbeat(settings.delivery_claim_seconds).start()
    Ticker().start()
    create_consumer(workers or settings.queue_workers, embedded=False).run()


@app.command()
def migrate() -> None:
    """Apply database migrations (serve and worker also do this at start)."""
    settings = _settings()
    migrations.upgrade(settings.resolved_database_url)
    err.print("database is up to date")


@accounts_app.command("create")
def accounts_create(username: str) -> None:
    """Create an account with its default list; prints its first API key on the last line."""
    settings = _settings()
    with _transaction(settings) as session:
        account, key = accounts.create_account(session, username)
    err.print(
        f"Created account [bold]{account.username}[/]. Its API key is below; it is shown only "
        f"once. Try:\n  curl -H 'authorization: Token token=KEY' "
        f"{settings.public_url}/v1/orca/{account.username}/subscribers",
        highlight=False,
    )
    typer.echo(key.secret)


@keys_app.command("create")
def keys_create(username: str) -> None:
    """Create another API key for the account; prints it on the last line."""
    with _transaction(_settings()) as session:
        key = accounts.create_key(session, accounts.get_account(session, username))
    err.print(f"New key {key.prefix} (shown only once; revoke the old one when rotated):")
    typer.echo(key.secret)


@keys_app.command("revoke")
def keys_revoke(username: str, key_prefix: str) -> None:
    """Revoke the key whose prefix (as `keys list` shows it) is KEY_PREFIX."""
    with _transaction(_settings()) as session:
        key = accounts.revoke_key(session, accounts.get_account(session, username), key_prefix)
    typer.echo(f"revoked {key.prefix}")


@keys_app.command("list")
def keys_list(username: str) -> None:
    """The account's keys: prefix, created, revoked."""
    with _transaction(_settings()) as session:
        keys = accounts.list_keys(session, accounts.get_account(session, username))
    table = Table("prefix", "created", "revoked")
    for key in keys:
        table.add_row(
            key.prefix,
            key.created_at.isoformat(timespec="seconds"),
            key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else "-",
        )
    Console().print(table)


@contextmanager
def _users_transaction(settings: Settings) -> Iterator[Session]:
    """As `_transaction`, but a refusal exits 2: the command line was at fault."""
    migrations.upgrade(settings.resolved_database_url)
    database = db.configure(settings.resolved_database_url)
    try:
        with database.transaction() as session:
            yield session
    except DripstoneError as exc:
        err.print(f"[red]error:[/] {exc.message}", highlight=False)
        raise typer.Exit(2) from None
    except IntegrityError:  # another command took the address between check and insert
        err.print("[red]error:[/] that address was just taken; try another", highlight=False)
        raise typer.Exit(2) from None


def _the_account(session: Session, name: str | None) -> Account:
    """The account named, or the only one there is."""
    if name is not None:
        return accounts.get_account(session, name)
    found = accounts.list_accounts(session)
    if len(found) != 1:
        raise DripstoneError(
            "there are no accounts yet: create one with `dripstone accounts create NAME`"
            if not found
            else "there are several accounts: name one with --account NAME"
        )
    return found[0]


def _password(from_stdin: bool) -> tuple[str, bool]:
    """The password given on standard input, or a generated one; and whether generated."""
    if not from_stdin:
        return users.generate_password(), True
    return sys.stdin.read().removesuffix("\n").removesuffix("\r"), False


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="read the password from standard input instead of generating one"
    ),
]


@users_app.command("create")
def users_create(
    username: str,
    email: str,
    role: Annotated[Role, typer.Option(case_sensitive=False, help="what the user may do")],
    account: Annotated[
        str | None, typer.Option(help="the account's name; may be left out when there is one")
    ] = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a dashboard user. Without --password-stdin, prints a generated password alone
    on the last line."""
    password, generated = _password(password_stdin)
    with _users_transaction(_settings()) as session:
        user = users.create_user(
            session, _the_account(session, account), username, email, role, password
        )
        account_name = accounts.account_name(session, user.account_id)
    err.print(
        f"Created {user.role} [bold]{user.email}[/] in account {account_name}.", highlight=False
    )
    if generated:
        err.print("Its password is below; it is shown only once.")
        typer.echo(password)


@users_app.command("list")
def users_list(
    account: Annotated[str | None, typer.Option(help="only this account's users")] = None,
) -> None:
    """Users: account, username, email, role, disabled, created."""
    with _users_transaction(_settings()) as session:
        chosen = None if account is None else accounts.get_account(session, account)
        found = users.list_users(session, chosen)
        names = {u.account_id: accounts.account_name(session, u.account_id) for u in found}
    table = Table("account", "username", "email", "role", "disabled", "created")
    for user in found:
        table.add_row(
            names[user.account_id],
            user.username,
            user.email,
            user.role.value,
            "yes" if user.disabled else "no",
            user.created_at.isoformat(timespec="seconds"),
        )
    Console().print(table)


@users_app.command("disable")
def users_disable(email: str) -> None:
    """Disable a user: no more sign-in, and their sessions end."""
    with _users_transaction(_settings()) as session:
        user = users.disable_user(session, email)
    typer.echo(f"disabled {user.email}")


@users_app.command("reset")
def users_reset(email: str, password_stdin: PasswordStdin = False) -> None:
    """Set a new password. Without --password-stdin, prints a generated one on the last line."""
    password, generated = _password(password_stdin)
    with _users_transaction(_settings()) as session:
        user = users.reset_password(session, email, password)
    err.print(f"New password set for {user.email}; their sessions have ended.", highlight=False)
    if generated:
        typer.echo(password)


@app.command("import")
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file; its first line names the columns")],
    list_name: Annotated[str, typer.Option("--list", help="the list to add every row to")],
    account: Annotated[
        str | None, typer.Option(help="account username (needed when there are several)")
    ] = None,
    update_existing: Annotated[
        bool, typer.Option(help="update subscribers already there instead of skipping them")
    ] = False,
) -> None:
    """Import subscribers from a CSV file, showing the import job's progress."""
    from dripstone.app import configure_runtime
    from dripstone.jobs.service import execute_job

    settings = _settings()
    if not file.is_file():
        err.print(f"[red]error:[/] no file {str(file)!r}", highlight=False)
        raise typer.Exit(2)
    migrations.upgrade(settings.resolved_database_url)
    configure_runtime(settings)
    database = db.database()
    options_existing: importing.Existing = "update" if update_existing else "skip"
    with _transaction(settings) as session:
        owner = _the_account(session, account)
        scope = AccountScope(session, owner.id)
        target = _list_named(scope, list_name)
        job = importing.start_import(
            scope,
            file,
            importing.ImportOptions(list_id=target.uuid, existing=options_existing),
            owned=False,
        )
        jid, total, account_id = job.id, job.total, owner.id
    # Run the job here; a worker that took it off the queue first runs it instead.
    runner = threading.Thread(target=execute_job, args=(database, jid), daemon=True)
    runner.start()
    with Progress(
        TextColumn("importing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        bar = progress.add_task("import", total=total)
        while True:
            with database.read_sessions() as session:
                found = get_job(AccountScope(session, account_id), jid)
                assert found is not None
                state, done, error = found.state, found.done + found.failed, found.error
                counts = importing.import_counts(found) or {}
                rejected = importing.rejected_rows_path(found)
            progress.update(bar, completed=done)
            if state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
                break
            time.sleep(0.2)
    if state != JobState.SUCCEEDED:
        err.print(f"[red]import {state}:[/] {error}", highlight=False)
        raise typer.Exit(1)
    typer.echo(
        f"added {counts['added']}, updated {counts['updated']}, skipped {counts['skipped']}, "
        f"rejected {counts['rejected']}"
    )
    if counts["rejected"]:
        typer.echo(f"rejected rows and reasons: {rejected}")


@app.command()
def recount(
    account: Annotated[
        str | None, typer.Option(help="account username (default: every account)")
    ] = None,
) -> None:
    """Count every list afresh and put its kept counts right (members, and who a send
    reaches); prints each list that was wrong."""
    settings = _settings()
    with _transaction(settings) as session:
        stmt = select(SubscriptionList.id).order_by(SubscriptionList.id)
        if account is not None:
            stmt = stmt.where(SubscriptionList.account_id == _the_account(session, account).id)
        list_ids = list(session.scalars(stmt))
    database = db.database()
    wrong = 0
    with Progress(
        TextColumn("recounting lists"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        bar = progress.add_task("recount", total=len(list_ids))
        for list_id in list_ids:
            # One list a transaction: its count row is locked only while it is counted.
            with database.transaction() as session:
                lst = session.get(SubscriptionList, list_id)
                if lst is not None:
                    fixed = counts.recount(session, lst)
                    if fixed.was_wrong:
                        wrong += 1
                        kept = fixed.kept or ("none", "none")
                        typer.echo(
                            f"{lst.name} (account {lst.account_id}): members {kept[0]} -> "
                            f"{fixed.counted[0]}, reachable {kept[1]} -> {fixed.counted[1]}"
                        )
            progress.advance(bar)
    typer.echo(f"recounted {len(list_ids)} lists, {wrong} put right")


def _list_named(scope: AccountScope, name: str) -> SubscriptionList:
    stmt = scope.select(SubscriptionList).where(SubscriptionList.name == name)
    found: SubscriptionList | None = scope.session.scalars(stmt).first()
    if found is None:
        raise Invalid(f"no list named {name!r} in this account", field="list")
    return found


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
