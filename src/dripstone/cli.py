"""The `dripstone` command: serve, worker, migrate, accounts and keys."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session

import dripstone.tasks  # noqa: F401  (registers every domain: account set-up, tasks, job steps)
from dripstone import db, migrations
from dripstone.accounts import service as accounts
from dripstone.config import ConfigError, Settings, load_settings
from dripstone.errors import DripstoneError
from dripstone.logs import configure_logging

app = typer.Typer(
    help="Dripstone: self-hosted email marketing with drip campaigns.", no_args_is_help=True
)
accounts_app = typer.Typer(help="Create accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
