"""`reflexio-store`: migrate, check and demo from an installed package (no checkout needed)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from reflexio_store.errors import ReflexioStoreError
from reflexio_store.migrations import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    head_revision,
    upgrade,
)
from reflexio_store.sessions import SessionFactory
from reflexio_store.settings import (
    ResolvedStorage,
    StorageConfigPostgres,
    StorageConfigSQLite,
    resolve_storage,
    validate_schema,
)
from reflexio_store.urls import parse_database_url


def _storage(args: argparse.Namespace) -> ResolvedStorage:
    url = getattr(args, "url", None)
    schema = getattr(args, "schema", None)
    if url is None:
        storage = resolve_storage()
        if schema:
            storage = dataclasses.replace(storage, schema=validate_schema(schema))
        return storage
    if parse_database_url(url).backend == "sqlite":
        return resolve_storage(StorageConfigSQLite(db_url=url))
    return resolve_storage(StorageConfigPostgres(db_url=url, schema=schema))


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    if args.sql:
        upgrade(storage, args.revision, sql=True)
        return 0
    upgrade(storage, args.revision)
    console.print(
        f"[green]Migrated[/] {storage.writer_url.masked()} "
        f"(schema {storage.schema or 'public'}) to {args.revision}."
    )
    return 0


def cmd_downgrade(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    downgrade(storage, args.revision, sql=args.sql)
    if not args.sql:
        console.print(f"[yellow]Downgraded[/] {storage.writer_url.masked()} to {args.revision}.")
    return 0


def _probe(factory: SessionFactory, role: str) -> dict[str, Any]:
    engine = factory.writer_engine if role == "writer" else factory.reader_engine
    info: dict[str, Any] = {}
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            info["server"] = "PostgreSQL " + str(conn.execute(text("SHOW server_version")).scalar())
            info["pgvector"] = (
                conn.execute(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                ).scalar()
                or "not installed"
            )
            info["in_recovery"] = conn.execute(text("SELECT pg_is_in_recovery()")).scalar()
        else:
            info["server"] = "SQLite " + str(
                conn.exec_driver_sql("SELECT sqlite_version()").scalar()
            )
            try:
                info["sqlite-vec"] = conn.exec_driver_sql("SELECT vec_version()").scalar()
            except DBAPIError:
                info["sqlite-vec"] = "not loaded"
        schema = factory.storage.schema
        has_version = inspect(conn).has_table(VERSION_TABLE, schema=schema)
        info["revision"] = current_revision(conn, schema) if has_version else None
    return info


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    factory = SessionFactory(storage)
    table = Table(title="reflexio_store check", show_header=False)
    table.add_column("setting", style="bold")
    table.add_column("value")
    for key, value in storage.describe().items():
        table.add_row(key, str(value))
    head = head_revision()
    ok = True
    try:
        writer = _probe(factory, "writer")
        table.add_row("writer server", writer["server"])
        for key in ("pgvector", "sqlite-vec"):
            if key in writer:
                table.add_row(key, str(writer[key]))
                ok = ok and writer[key] not in ("not installed", "not loaded")
        at_head = writer["revision"] == head
        ok = ok and at_head
        revision = f"{writer['revision'] or '(none)'} (head {head})"
        table.add_row("schema revision", revision if at_head else f"[red]{revision}[/]")
        if factory.has_replica:
            reader = _probe(factory, "reader")
            table.add_row(
                "reader in use", f"yes: {reader['server']}, in recovery: {reader['in_recovery']}"
            )
        else:
            table.add_row("reader in use", "no (searches use the writer)")
    except DBAPIError as exc:
        ok = False
        table.add_row("connection", f"[red]failed: {type(exc.orig).__name__}[/]")
    finally:
        factory.dispose()
    console.print(table)
    if not ok:
        console.print(
            "[red]Not ready.[/] Run `reflexio-store migrate` (or `alembic upgrade head`) and "
            "make sure pgvector is installed on PostgreSQL."
        )
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from reflexio_store.demo.run import run_demo

    return int(run_demo(console, db_url=args.url))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflexio-store", description="reflexio_store: migrations, checks and a demo."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="database URL (default: REFLEXIO_DB_URL or the SQLite file)")
        p.add_argument("--schema", help="PostgreSQL schema (default: REFLEXIO_POSTGRES_SCHEMA)")

    migrate = sub.add_parser("migrate", help="upgrade the schema (default: to head)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    common(migrate)
    migrate.set_defaults(func=cmd_migrate)

    down = sub.add_parser("downgrade", help="downgrade the schema to a revision (e.g. base)")
    down.add_argument("revision")
    down.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    common(down)
    down.set_defaults(func=cmd_downgrade)

    check = sub.add_parser("check", help="connectivity, versions, revision, pools (masked)")
    common(check)
    check.set_defaults(func=cmd_check)

    demo = sub.add_parser("demo", help="load a synthetic Reflexio workload and search it")
    demo.add_argument("--url", help="database URL (default: a fresh SQLite file in a temp folder)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return int(args.func(args, console))
    except ReflexioStoreError as exc:
        Console(stderr=True).print(f"[red]error:[/] {exc}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
