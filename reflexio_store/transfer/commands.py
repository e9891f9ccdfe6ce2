"""`reflexio-store copy` and `import-reflexio`: argument parsing and progress bars."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from reflexio_store.errors import ConfigurationError
from reflexio_store.migrations import upgrade
from reflexio_store.sessions import SessionFactory
from reflexio_store.settings import (
    StorageConfigPostgres,
    StorageConfigSQLite,
    resolve_storage,
    validate_schema,
)
from reflexio_store.urls import parse_database_url


def factory_for(
    url: str,
    schema: str | None = None,
    *,
    source: bool = False,
    url_option: str = "--url",
    schema_option: str = "--schema",
) -> SessionFactory:
    """A session factory for a URL given on the command line (its schema, if PostgreSQL);
    errors name the options as typed (`url_option`, `schema_option`).

    `source`: a database only read from. It must exist and be at the current revision: it is
    never created or migrated (a mistyped --from would otherwise be created empty, or an
    unrelated SQLite file be given reflexio_store's tables)."""
    parsed = parse_database_url(url, url_option)
    if parsed.backend == "sqlite":
        if schema:
            raise _schema_on_sqlite(schema_option, schema)
        storage = resolve_storage(StorageConfigSQLite(db_url=url))
        path = storage.writer_url.sqlite_path
        if source and path is not None and not path.is_file():
            raise ConfigurationError(f"{url_option}: there is no SQLite file {path}.")
    else:
        storage = resolve_storage(StorageConfigPostgres(db_url=url, schema=schema))
    if source:
        storage = dataclasses.replace(storage, auto_migrate=False)
    return SessionFactory(storage)


def _schema_on_sqlite(option: str, schema: str) -> ConfigurationError:
    return ConfigurationError(
        f"{option} {schema} applies to PostgreSQL, but that database is SQLite (one file holds "
        "one store): leave it out, or give a PostgreSQL URL."
    )


def _require_reflexio() -> None:
    if importlib.util.find_spec("reflexio") is None:
        raise ConfigurationError(
            "import-reflexio reads Reflexio's rows with the reflexio-ai package, which is not "
            "installed: pip install 'reflexio_store[reflexio]'. Nothing was changed."
        )


@contextmanager
def progress_bars(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per table; yields the callback that advances them."""
    columns = (
        TextColumn("{task.description:<34}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        tasks: dict[str, TaskID] = {}

        def advance(table: str, done: int, total: int) -> None:
            if table not in tasks:
                tasks[table] = progress.add_task(table, total=max(total, 1))
            progress.update(tasks[table], completed=done, total=max(total, done, 1))

        yield advance


def cmd_copy(args: argparse.Namespace, console: Console) -> int:
    from reflexio_store.transfer.copy import check_batch_size, copy_database

    # copy_database's own check, named as typed, before the target is created or migrated.
    check_batch_size(args.batch, "--batch")
    source = factory_for(
        args.source,
        args.from_schema,
        source=True,
        url_option="--from",
        schema_option="--from-schema",
    )
    target = factory_for(
        args.target, args.to_schema, url_option="--to", schema_option="--to-schema"
    )
    try:
        source.ensure_schema()
        upgrade(target.storage)
        console.print(
            f"Copying {source.storage.writer_url.masked()} -> {target.storage.writer_url.masked()}"
        )
        with progress_bars(console) as advance:
            reports = copy_database(
                source, target, append=args.append, batch=args.batch, progress=advance
            )
    finally:
        source.dispose()
        target.dispose()
    table = Table(title="copy verified")
    for name in ("table", "source rows", "copied", "target rows", "checksum"):
        table.add_column(name, justify="left" if name in ("table", "checksum") else "right")
    for r in reports:
        table.add_row(
            r.table,
            str(r.source_rows),
            str(r.copied),
            str(r.target_rows),
            f"[green]{r.source_checksum[:16]}[/] ok",
        )
    console.print(table)
    return 0


def cmd_import_reflexio(args: argparse.Namespace, console: Console) -> int:
    from reflexio_store.transfer.reflexio_import import SUPPORTED_VERSION, import_reflexio

    _require_reflexio()
    path = Path(args.path)
    if not path.is_file():
        raise ConfigurationError(f"No Reflexio database at {path}: give the path of its .db file.")
    if args.url:
        target = factory_for(args.url, args.schema)
    else:
        storage = resolve_storage()
        if args.schema and storage.backend == "sqlite":
            raise _schema_on_sqlite("--schema", args.schema)
        if args.schema:
            storage = dataclasses.replace(storage, schema=validate_schema(args.schema))
        target = SessionFactory(storage)
    into = target.storage.writer_url.sqlite_path
    if into is not None and into.expanduser().resolve() == path.resolve():
        target.dispose()
        raise ConfigurationError(
            f"{path} is both the Reflexio file and the target: import it into a new database "
            "(--url sqlite:////path/to/new.db, or REFLEXIO_DB_URL / SQLITE_FILE_DIRECTORY). "
            "Nothing was changed."
        )
    try:
        upgrade(target.storage)
        console.print(
            f"Importing {args.path} ({SUPPORTED_VERSION} layout) into "
            f"{target.storage.writer_url.masked()} (schema {target.storage.schema or 'public'})"
        )
        with progress_bars(console) as advance:
            reports = import_reflexio(path, target, progress=advance)
    finally:
        target.dispose()
    table = Table(title="import verified")
    for name in ("Reflexio table", "table", "rows read", "imported", "present", "merged"):
        table.add_column(name, justify="left" if "table" in name else "right")
    for r in reports:
        table.add_row(
            r.source_table,
            r.target_table,
            str(r.source_rows),
            str(r.imported),
            str(r.present),
            str(r.merged),
        )
    console.print(table)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    copy = sub.add_parser(
        "copy",
        help="copy every table between two reflexio_store databases, verified",
        description=(
            "Copy every table from one reflexio_store database to another (SQLite to PostgreSQL "
            "is the usual case), in batches, then verify counts and a checksum per table. The "
            "target is migrated to head first and must be empty unless --append is given."
        ),
    )
    copy.add_argument("--from", dest="source", required=True, help="source database URL")
    copy.add_argument("--to", dest="target", required=True, help="target database URL")
    copy.add_argument("--from-schema", help="source PostgreSQL schema (default public)")
    copy.add_argument("--to-schema", help="target PostgreSQL schema (default public)")
    copy.add_argument(
        "--append",
        action="store_true",
        help="allow a non-empty target: rows whose keys exist are kept; safe to re-run",
    )
    copy.add_argument("--batch", type=int, default=2000, help="rows per batch (default 2000)")
    copy.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    copy.set_defaults(func=cmd_copy)

    imp = sub.add_parser(
        "import-reflexio",
        help="import an existing Reflexio SQLite database (reflexio-ai 0.2.8) into this store",
        description=(
            "Read a Reflexio SQLite database, as reflexio-ai 0.2.8's SQLiteStorage creates it, "
            "into the configured store (or --url): every entity, keeping ids, timestamps and "
            "stored embeddings. Counts are verified at the end; running it again adds only what "
            "is missing."
        ),
    )
    imp.add_argument("path", help="the Reflexio .db file")
    imp.add_argument("--url", help="target database URL (default: the configured store)")
    imp.add_argument("--schema", help="target PostgreSQL schema (default: configured)")
    imp.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    imp.set_defaults(func=cmd_import_reflexio)
