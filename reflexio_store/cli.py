"""`reflexio-store`: migrate, check and demo from an installed package (no checkout needed).

Every failure ends in one line on stderr (the masked URL and the server's reason where there is
one) and a non-zero exit; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import sys
import traceback
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from reflexio_store.db_errors import is_unavailable, server_reason, unavailable_error
from reflexio_store.engines import WRITE_OPTION, sqlite_vec_problem
from reflexio_store.errors import ConfigurationError, ReflexioStoreError
from reflexio_store.migrations import (
    check_embedding_dimensions,
    current_revision,
    downgrade,
    foreign_database_advice,
    foreign_tables,
    head_revision,
    known_revisions,
    migration_engine,
    packaged_alembic_ini,
    revision_order,
    target_revision,
    upgrade,
)
from reflexio_store.outages import translate
from reflexio_store.sessions import SessionFactory
from reflexio_store.settings import (
    DEFAULT_SCHEMA,
    ResolvedStorage,
    StorageConfigPostgres,
    StorageConfigSQLite,
    ignored_variables,
    resolve_storage,
    validate_schema,
)
from reflexio_store.store.retention import load_retention_settings
from reflexio_store.urls import parse_database_url

EXIT_NOT_READY = 1
EXIT_ERROR = 2


def _storage(args: argparse.Namespace) -> ResolvedStorage:
    url = getattr(args, "url", None)
    schema = getattr(args, "schema", None)
    if url is None:
        storage = resolve_storage()
        if schema:
            storage = dataclasses.replace(storage, schema=validate_schema(schema))
    elif parse_database_url(url, "--url").backend == "sqlite":
        storage = resolve_storage(StorageConfigSQLite(db_url=url))
    else:
        storage = resolve_storage(StorageConfigPostgres(db_url=url, schema=schema))
    if schema and storage.backend == "sqlite":
        raise ConfigurationError(
            f"--schema {schema} applies to PostgreSQL, but the database is SQLite "
            f"({storage.writer_url.masked()}): SQLite keeps one organization per file."
        )
    args.storage = storage  # for the error line, should the command fail
    return storage


def _where(storage: ResolvedStorage) -> str:
    return f"{storage.writer_url.masked()} (schema {storage.schema or 'public'})"


def _missing_sqlite_file(storage: ResolvedStorage) -> str | None:
    """The path of a SQLite database file that does not exist (None: it exists, or is not a
    file): `check` and `downgrade` must not create one at a mistyped path."""
    path = storage.writer_url.sqlite_path
    if storage.backend != "sqlite" or storage.writer_url.is_memory or path is None:
        return None
    path = path.expanduser()
    return None if path.exists() else str(path)


def _revision_now(storage: ResolvedStorage) -> str | None:
    engine = migration_engine(storage)
    try:
        # A read: it must not queue for SQLite's write lock (BEGIN IMMEDIATE) behind a writer.
        with engine.execution_options(**{WRITE_OPTION: False}).connect() as conn:
            return current_revision(conn, storage.schema)
    finally:
        engine.dispose()


def _shown(revision: str | None) -> str:
    return revision or "base (no reflexio_store tables)"


def cmd_migrate(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    if args.sql:
        upgrade(storage, args.revision, sql=True)
        return 0
    before = None if storage.writer_url.is_memory else _revision_now(storage)
    target = target_revision(args.revision, before)
    if revision_order(target) < revision_order(before):
        raise ConfigurationError(
            f"{_where(storage)} is at {before}, newer than {_shown(target)}: migrate only "
            f"upgrades. To go back, run `reflexio-store downgrade {target or 'base'}` (it asks "
            "first: a downgrade can drop tables and columns with their data)."
        )
    upgrade(storage, target or "base")
    after = _revision_now(storage)
    if after == before:
        console.print(f"{escape(_where(storage))} is already at {after}.", soft_wrap=True)
    else:
        console.print(
            f"[green]Migrated[/] {escape(_where(storage))} from {escape(_shown(before))} to "
            f"{escape(_shown(after))}.",
            soft_wrap=True,
        )
    if storage.self_host is not None and after == head_revision():
        # Self-host start-up applies the migrations and bootstraps the one login (Reflexio).
        from reflexio_store.self_host import bootstrap_self_host

        engine = migration_engine(storage)
        try:
            translate = {None: storage.schema} if storage.schema else None
            result = bootstrap_self_host(
                engine.execution_options(schema_translate_map=translate), storage.self_host
            )
        finally:
            engine.dispose()
        state = "created" if result.created else "password rotated" if result.rotated else "ok"
        console.print(
            f"Self-host organization {escape(storage.self_host.username)}: {state}.",
            soft_wrap=True,
        )
    return 0


def _confirm(question: str, refusal: str, console: Console) -> bool:
    """Ask `question` on a terminal and return whether the answer is 'yes'; without a terminal
    raise _Refused(`refusal`), which tells the user to re-run with --yes."""
    if sys.stdin is None or not sys.stdin.isatty():
        raise _Refused(f"{refusal} Re-run with --yes.")
    console.print(escape(f"{question} Type 'yes' to go on: "), end="", soft_wrap=True)
    try:
        answer = input()
    except EOFError:
        answer = ""
    return answer.strip().lower() == "yes"


def _confirm_downgrade(
    storage: ResolvedStorage, before: str, target: str | None, console: Console
) -> bool:
    """Every downgrade can lose data: base drops every table, others drop columns or tables."""
    undone = [
        r
        for r in reversed(known_revisions())
        if revision_order(target) < revision_order(r) <= revision_order(before)
    ]
    loss = (
        "This drops every reflexio_store table and its data."
        if target is None
        else f"This undoes revision(s) {', '.join(undone)}, which can drop tables and columns "
        "with their data."
    )
    return _confirm(
        f"Downgrade {_where(storage)} from {before} to {_shown(target)}? {loss}",
        f"Refusing to downgrade {_where(storage)} from {before} to {_shown(target)} without "
        f"confirmation (no terminal to ask on). {loss}",
        console,
    )


class _Refused(Exception):
    """The command was not run because the user did not confirm it."""


def cmd_downgrade(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    if args.sql:
        downgrade(storage, args.revision, sql=True)
        return 0
    missing = _missing_sqlite_file(storage)
    if missing is not None:
        raise ConfigurationError(f"There is no SQLite database {missing}: nothing to downgrade.")
    before = _revision_now(storage)
    target = target_revision(args.revision, before)
    if before is None:
        console.print(f"{escape(_where(storage))} has no reflexio_store revision: nothing to do.")
        return 0
    if revision_order(target) > revision_order(before):
        raise ConfigurationError(
            f"{_where(storage)} is at {before}, older than {target}: downgrade only goes back. "
            f"Run `reflexio-store migrate {target}` to upgrade."
        )
    if target == before:
        console.print(f"{escape(_where(storage))} is already at {before}.", soft_wrap=True)
        return 0
    if not args.yes and not _confirm_downgrade(storage, before, target, console):
        console.print("Not confirmed: nothing was changed.")
        return EXIT_ERROR
    downgrade(storage, target or "base")
    console.print(
        f"[yellow]Downgraded[/] {escape(_where(storage))} from {before} to "
        f"{escape(_shown(_revision_now(storage)))}.",
        soft_wrap=True,
    )
    return 0


def _confirm_cluster(storage: ResolvedStorage, tables: list[str], console: Console) -> bool:
    """CLUSTER locks each table while it is rewritten."""
    what = (
        f"{', '.join(tables)} in {_where(storage)}: each table is locked (reads and writes wait, "
        "on the replicas too) while it is rewritten and its indexes rebuilt"
    )
    return _confirm(
        f"Cluster {what}.",
        f"Refusing to cluster {what}, without confirmation (no terminal to ask on).",
        console,
    )


def cmd_cluster(args: argparse.Namespace, console: Console) -> int:
    from reflexio_store.maintenance import (
        USER_ORDER_INDEXES,
        check_lock_timeout,
        check_only_below,
        cluster_by_user,
    )

    # Checked here first, by the library's own checks, so that a bad value is named as typed
    # (--lock-timeout, not lock_timeout) and refused before anything is connected to or asked.
    check_lock_timeout(args.lock_timeout, "--lock-timeout")
    check_only_below(args.only_below, "--only-below")
    storage = _storage(args)
    tables = args.table or list(USER_ORDER_INDEXES)
    if storage.backend != "postgresql":
        cluster_by_user(storage, tables)  # raises ConfigurationError: what SQLite does instead
    if not args.yes and not _confirm_cluster(storage, tables, console):
        console.print("Not confirmed: nothing was changed.")
        return EXIT_ERROR
    done = cluster_by_user(
        storage, tables, lock_timeout=args.lock_timeout, only_below=args.only_below
    )
    table = Table(
        "table",
        "user order before",
        "rows",
        "pages",
        "seconds",
        "action",
        title=f"Clustered by user: {_where(storage)}",
    )
    for item in done:
        order = "-" if item.user_order is None else f"{item.user_order:.2f}"
        action = "clustered" if item.clustered else "left as it was"
        table.add_row(
            item.table,
            order,
            f"{item.rows:,}",
            f"{item.pages:,}",
            f"{item.seconds:.1f}",
            action,
        )
    console.print(table)
    return 0


def _pgvector_state(conn: Any) -> tuple[str, bool]:
    installed = conn.execute(
        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    if installed:
        return str(installed), True
    available = conn.execute(
        text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar()
    if available:
        # The first migration creates it (or says which superuser command to run).
        return f"{available} available, not yet created (the migration creates it)", True
    return "not available on this server (install pgvector there)", False


def _probe(factory: SessionFactory, role: str) -> dict[str, Any]:
    engine = factory.writer_engine if role == "writer" else factory.reader_engine
    info: dict[str, Any] = {}
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            info["server"] = "PostgreSQL " + str(conn.execute(text("SHOW server_version")).scalar())
            info["pgvector"], info["pgvector_ok"] = _pgvector_state(conn)
            info["in_recovery"] = conn.execute(text("SELECT pg_is_in_recovery()")).scalar()
        else:
            info["server"] = "SQLite " + str(
                conn.exec_driver_sql("SELECT sqlite_version()").scalar()
            )
            try:
                info["sqlite-vec"] = conn.exec_driver_sql("SELECT vec_version()").scalar()
            except DBAPIError:
                info["sqlite-vec"] = "not loaded"
        if role == "writer":
            info["revision"] = current_revision(conn, factory.storage.schema)
            revision = info["revision"]
            info["foreign"] = [] if revision else foreign_tables(conn, factory.storage.schema)
    return info


def _cluster_advice(factory: SessionFactory, table: Table) -> str | None:
    """A 'user order' row from the planner's statistics, and advice to cluster the tables whose
    users' rows are scattered while users hold thousands of them (an exact scan of a user's
    rows then reads about one heap page a row)."""
    from reflexio_store.maintenance import ADVISE_BELOW_ORDER, user_order

    storage = factory.storage
    with factory.writer_engine.connect() as conn:
        orders = user_order(conn, storage.schema or DEFAULT_SCHEMA)
    known = [o for o in orders if o.order is not None]
    if known:
        table.add_row(
            "user order",
            ", ".join(f"{o.table} {o.order:.2f} (largest user ~{o.largest_user:,})" for o in known),
        )
    worth = [o.table for o in orders if o.worth_clustering]
    if not worth:
        return None
    flags = f" --schema {storage.schema}" if storage.schema else ""
    flags += "".join(f" --table {name}" for name in worth)
    return (
        f"{', '.join(worth)}: rows are in arrival order while a user holds thousands of them, so "
        "a user-filtered search reads about one heap page a row. Run `reflexio-store "
        f"cluster{flags} --only-below {ADVISE_BELOW_ORDER}` in a quiet hour (it locks each table "
        'while it rewrites it; see "Clustering by user" in README.md)'
    )


def _replica_line(replica: dict[str, Any]) -> str:
    if not replica.get("reachable", True):
        return f"[yellow]unreachable: {replica.get('reason')}[/] (reads use the primary)"
    lag = replica.get("lag_ms")
    lag_text = "unknown" if lag is None else f"{lag:.0f} ms"
    return f"reachable, {replica['state']}, lag {lag_text}"


def cmd_check(args: argparse.Namespace, console: Console) -> int:
    storage = _storage(args)
    factory = SessionFactory(storage)
    table = Table(title="reflexio_store check", show_header=False)
    table.add_column("setting", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")  # long URLs fold onto more lines, never cut
    for key, value in storage.describe().items():
        table.add_row(key, escape(str(value)))
    ignored = ignored_variables(storage)
    if ignored:
        table.add_row("ignored", f"[yellow]{escape(', '.join(ignored))}[/] (PostgreSQL only)")
    head = head_revision()
    problems: list[str] = []
    advice: str | None = None
    failure: str | None = None
    try:
        load_retention_settings()
    except ConfigurationError as exc:
        problems.append(str(exc).rstrip("."))
    missing = _missing_sqlite_file(storage)
    if missing is not None:
        table.add_row("database", f"[red]no file {escape(missing)}[/] (migrate creates it)")
        problems.append(
            "run `reflexio-store migrate` to create it (or correct the path: REFLEXIO_DB_URL, "
            "SQLITE_FILE_DIRECTORY)"
        )
        console.print(table)
        console.print(f"[red]Not ready.[/] To fix: {escape('; '.join(problems))}.", soft_wrap=True)
        return EXIT_NOT_READY
    try:
        writer = _probe(factory, "writer")
        table.add_row("writer server", writer["server"])
        if "pgvector" in writer:
            table.add_row("pgvector", escape(writer["pgvector"]))
            if not writer["pgvector_ok"]:
                problems.append("install pgvector on the PostgreSQL server")
        if "sqlite-vec" in writer:
            table.add_row("sqlite-vec", str(writer["sqlite-vec"]))
            if writer["sqlite-vec"] == "not loaded":
                problems.append(
                    f"vector search needs sqlite-vec: {sqlite_vec_problem() or 'not loaded'}"
                )
        revision = f"{writer['revision'] or '(none)'} (head {head})"
        if writer["revision"] == head:
            table.add_row("schema revision", revision)
            try:
                check_embedding_dimensions(storage, factory.writer_engine)
            except ConfigurationError as exc:
                problems.append(str(exc).rstrip("."))
            if storage.backend == "postgresql":
                advice = _cluster_advice(factory, table)
        elif writer["foreign"]:
            table.add_row("schema revision", f"[red]{revision}[/]")
            problems.append(foreign_database_advice(_where(storage), writer["foreign"]))
        elif storage.writer_url.is_memory:
            table.add_row("schema revision", f"{revision}: in memory, migrated on first use")
        else:
            table.add_row("schema revision", f"[red]{revision}[/]")
            flag = f" --schema {storage.schema}" if storage.schema else ""
            problems.append(f"run `reflexio-store migrate{flag}`")
        if factory.has_replica:
            # A replica that is down or behind is not fatal: reads go to the primary instead.
            for replica in factory.replicas.status():
                table.add_row(f"replica {replica['url']}", _replica_line(replica))
        else:
            table.add_row("reader in use", "no (searches use the writer)")
    except DBAPIError as exc:
        if args.debug:
            traceback.print_exc()
        reason = server_reason(exc, storage.writer_url)
        table.add_row("connection", f"[red]failed: {escape(reason)}[/]")
        failure = (
            str(unavailable_error(exc, storage.writer_url))
            if is_unavailable(exc)
            else f"The check failed on {storage.writer_url.masked()}: {reason}."
        )
    finally:
        factory.dispose()
    console.print(table)
    if advice is not None:
        console.print(f"[yellow]Advice:[/] {escape(advice)}.", soft_wrap=True)
    if failure is not None:
        _error_line(failure)
        return EXIT_ERROR
    if problems:
        console.print(f"[red]Not ready.[/] To fix: {escape('; '.join(problems))}.", soft_wrap=True)
        return EXIT_NOT_READY
    return 0


def cmd_alembic_ini(args: argparse.Namespace, console: Console) -> int:
    # Plain print: the path is meant for `alembic -c "$(reflexio-store alembic-ini)"`.
    print(packaged_alembic_ini())
    return 0


def cmd_demo(args: argparse.Namespace, console: Console) -> int:
    from reflexio_store.demo.run import run_demo

    return int(run_demo(console, db_url=args.url))


def _version() -> str:
    try:
        version = importlib.metadata.version("reflexio-store")
    except importlib.metadata.PackageNotFoundError:
        version = "(not installed)"
    return f"reflexio-store {version} (schema head {head_revision()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reflexio-store", description="reflexio_store: migrations, checks and a demo."
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true", help="show tracebacks of failures")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="database URL (default: REFLEXIO_DB_URL or the SQLite file)")
        p.add_argument("--schema", help="PostgreSQL schema (default: REFLEXIO_POSTGRES_SCHEMA)")
        # SUPPRESS: `reflexio-store --debug check` and `reflexio-store check --debug` both work.
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)

    migrate = sub.add_parser("migrate", help="upgrade the schema (default: to head)")
    migrate.add_argument("revision", nargs="?", default="head")
    migrate.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    common(migrate)
    migrate.set_defaults(func=cmd_migrate)

    down = sub.add_parser("downgrade", help="downgrade the schema to a revision (e.g. base)")
    down.add_argument("revision")
    down.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    down.add_argument(
        "--yes", action="store_true", help="do not ask before downgrading to base (drops data)"
    )
    common(down)
    down.set_defaults(func=cmd_downgrade)

    check = sub.add_parser("check", help="connectivity, versions, revision, pools (masked)")
    common(check)
    check.set_defaults(func=cmd_check)

    cluster = sub.add_parser(
        "cluster",
        help="PostgreSQL: rewrite the user-keyed tables in user order (faster user-filtered "
        "searches; locks each table while it runs)",
    )
    cluster.add_argument(
        "--table",
        action="append",
        choices=["profiles", "user_playbooks", "interactions", "requests"],
        help="a table to cluster (repeatable; default: all four)",
    )
    cluster.add_argument(
        "--lock-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for each table's lock before giving up, changing nothing (10)",
    )
    cluster.add_argument(
        "--only-below",
        type=float,
        default=None,
        metavar="ORDER",
        help="analyze each table and cluster only those whose user order (pg_stats correlation "
        "of user_id: 1.0 right after clustering, near 0 in arrival order) is below ORDER, "
        "e.g. 0.9 in a nightly job",
    )
    cluster.add_argument("--yes", action="store_true", help="do not ask before locking tables")
    common(cluster)
    cluster.set_defaults(func=cmd_cluster)

    ini = sub.add_parser(
        "alembic-ini",
        help='print the path of the shipped alembic.ini: alembic -c "$(reflexio-store '
        'alembic-ini)" upgrade head',
    )
    ini.set_defaults(func=cmd_alembic_ini)

    demo = sub.add_parser("demo", help="load a synthetic Reflexio workload and search it")
    demo.add_argument("--url", help="database URL (default: a fresh SQLite file in a temp folder)")
    demo.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    demo.set_defaults(func=cmd_demo)

    from reflexio_store.transfer.commands import register as register_transfer

    register_transfer(sub)
    return parser


def _error_line(message: str) -> None:
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def _describe(exc: BaseException, args: argparse.Namespace) -> str:
    storage: ResolvedStorage | None = getattr(args, "storage", None)
    if isinstance(exc, _Refused | ReflexioStoreError):
        return str(exc)
    if isinstance(exc, DBAPIError) and storage is not None:
        if is_unavailable(exc):
            return str(unavailable_error(exc, storage.writer_url))
        translated = translate(exc, storage.writer_url)  # busy, too large, timed out
        if translated is not None:
            return str(translated)
        return f"{storage.writer_url.masked()}: {server_reason(exc, storage.writer_url)}"
    if isinstance(exc, DBAPIError):
        return server_reason(exc)
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return int(args.func(args, console))
    except KeyboardInterrupt:
        _error_line("interrupted.")
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        hint = "" if args.debug else " (--debug shows the traceback)"
        if isinstance(exc, _Refused | ReflexioStoreError):
            hint = ""
        _error_line(_describe(exc, args) + hint)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
