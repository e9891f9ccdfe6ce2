"""Running the Alembic migrations from code and the CLI, and the hooks env.py shares with tests.

The migrations live in the repository's top-level alembic/ folder; wheels carry the same folder
as reflexio_store/_alembic (see pyproject.toml), so `reflexio-store migrate` works when installed.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, func, inspect, pool, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from alembic import command
from reflexio_store.db_errors import is_unavailable, server_reason, unavailable_error
from reflexio_store.errors import (
    ConfigurationError,
    PgVectorUnavailableError,
    SchemaNotReadyError,
)
from reflexio_store.settings import DEFAULT_SCHEMA, ResolvedStorage
from reflexio_store.types import Embedding, SearchVector

VERSION_TABLE = "alembic_version"
MIGRATION_LOCK_KEY = "reflexio_store.migrate"
FTS_TABLE_SUFFIXES = (
    "_fts",
    "_fts_data",
    "_fts_idx",
    "_fts_content",
    "_fts_docsize",
    "_fts_config",
)


def script_location() -> str:
    packaged = Path(__file__).parent / "_alembic"
    if (packaged / "env.py").exists():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "alembic")


def packaged_alembic_ini() -> str:
    """The alembic.ini that travels with the migrations (in the wheel and in a checkout), for
    Alembic's own command line: `alembic -c "$(reflexio-store alembic-ini)" upgrade head`."""
    return str(Path(script_location()) / "alembic.ini")


def alembic_config(storage: ResolvedStorage | None = None, stdout: TextIO | None = None) -> Config:
    """An Alembic Config for the packaged migrations, carrying `storage` to env.py."""
    ini = Path(packaged_alembic_ini())
    cfg = Config(str(ini) if ini.exists() else None, stdout=stdout or sys.stdout)
    cfg.set_main_option("script_location", script_location())
    if storage is not None:
        cfg.attributes["storage"] = storage
    return cfg


@functools.cache
def head_revision() -> str:
    """The migrations' head, read once per process: parsing the revision files costs ~40 ms,
    and every organization's first session asks."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _require_revision(revision: object) -> None:
    # Alembic answers an empty revision with a bare AssertionError.
    if not isinstance(revision, str) or not revision.strip():
        raise ConfigurationError(f"No revision given: pass one of {_revision_choices()}")


def upgrade(storage: ResolvedStorage, revision: str = "head", *, sql: bool = False) -> None:
    """Upgrade `storage`'s schema (organization) to `revision`.

    Raises ConfigurationError for an unknown revision and DatabaseUnavailableError (masked URL,
    the server's reason) when the database cannot be reached or refuses the login."""
    _require_revision(revision)
    with _ALEMBIC_LOCK, _translated_errors(storage, "migrate"):
        command.upgrade(alembic_config(storage), revision, sql=sql)


def downgrade(storage: ResolvedStorage, revision: str = "base", *, sql: bool = False) -> None:
    """Downgrade `storage`'s schema to `revision` (base drops every reflexio_store table)."""
    _require_revision(revision)
    with _ALEMBIC_LOCK, _translated_errors(storage, "downgrade"):
        command.downgrade(alembic_config(storage), revision, sql=sql)


def target_revision(revision: str, current: str | None) -> str | None:
    """The revision `revision` names (None: base) for a database now at `current`: head, base,
    +N / -N from `current`, or a revision id (or its unique prefix).

    Raises ConfigurationError for anything else, or a step past either end."""
    _require_revision(revision)
    known = known_revisions()
    if revision == "head":
        return known[-1]
    if revision == "base":
        return None
    if revision[0] in "+-" and revision[1:].isdigit():
        position = (known.index(current) if current in known else -1) + int(revision)
        if not -1 <= position < len(known):
            raise ConfigurationError(
                f"Cannot go {revision} from {current or 'base'}: the revisions run from base to "
                f"{known[-1]} ({', '.join(known)})."
            )
        return None if position == -1 else known[position]
    matches = [r for r in known if r.startswith(revision)]
    if len(matches) != 1:
        raise ConfigurationError(
            f"Unknown revision {revision!r}. Known revisions: {_revision_choices()}"
        )
    return matches[0]


def _revision_choices() -> str:
    return f"{', '.join(known_revisions())}; also head, base, +N, -N."


def revision_order(revision: str | None) -> int:
    """Position of `revision` in the (linear) history: base is -1."""
    return -1 if revision is None else known_revisions().index(revision)


def known_revisions() -> list[str]:
    return list(_known_revisions())


@functools.cache
def _known_revisions() -> tuple[str, ...]:
    script = ScriptDirectory.from_config(alembic_config())
    return tuple(rev.revision for rev in reversed(list(script.walk_revisions())))


# Alembic installs its `context` and `op` proxies as module globals while env.py runs: two
# threads migrating (two organizations' first requests with auto-migrate) would clobber each
# other's. Across processes the per-schema advisory lock (env.py) serialises; here this does.
_ALEMBIC_LOCK = threading.RLock()


@contextmanager
def _translated_errors(storage: ResolvedStorage, action: str) -> Iterator[None]:
    try:
        yield
    except CommandError as exc:
        # Alembic's message ("Can't locate revision identified by 'x'") is plain; say what works.
        raise ConfigurationError(
            f"Cannot {action} to that revision: {str(exc).splitlines()[0]}. Known revisions: "
            f"{_revision_choices()}"
        ) from None
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise unavailable_error(exc, storage.writer_url, action) from None
        from reflexio_store.outages import is_busy, translate

        busy = translate(exc, storage.writer_url) if is_busy(exc) else None
        if busy is not None:
            raise busy from None
        raise


def version_table_schema(dialect: str, schema: str | None) -> str | None:
    """Where a schema's version table lives: in that schema, named explicitly on PostgreSQL
    (public included), so that lookups never go through the search path. SQLite: no schema."""
    if dialect != "postgresql":
        return None
    return schema or DEFAULT_SCHEMA


def current_revision(connection: Connection, schema: str | None) -> str | None:
    """The revision of `schema` (None: public), or None when it has no version table."""
    where = version_table_schema(connection.dialect.name, schema)
    if not inspect(connection).has_table(VERSION_TABLE, schema=where):
        return None
    ctx = MigrationContext.configure(connection, opts={"version_table_schema": where})
    heads = ctx.get_current_heads()
    return heads[0] if heads else None


def foreign_tables(connection: Connection, schema: str | None) -> list[str]:
    """Tables of reflexio_store's names in `schema`, for a schema with no reflexio_store
    revision: another application's (Reflexio's own SQLite file has this layout)."""
    from reflexio_store.models import Base

    where = version_table_schema(connection.dialect.name, schema)
    present = set(inspect(connection).get_table_names(schema=where))
    return sorted(present & {table.name for table in Base.metadata.sorted_tables})


def foreign_database_advice(where: str, tables: list[str]) -> str:
    shown = ", ".join(tables[:6]) + (", ..." if len(tables) > 6 else "")
    return (
        f"The database {where} already holds tables that reflexio_store would create ({shown}), "
        "but no reflexio_store schema revision: it belongs to another application, such as "
        "Reflexio itself (its SQLite file, ~/.reflexio/data/reflexio.db, is also "
        "reflexio_store's default). Point reflexio_store at a new database (REFLEXIO_DB_URL, "
        "or SQLITE_FILE_DIRECTORY for another folder), then bring Reflexio's data over with "
        "`reflexio-store import-reflexio PATH`. Nothing was changed."
    )


def refuse_foreign_tables(connection: Connection, storage: ResolvedStorage) -> None:
    """Before migrating: creating our tables over another application's would fail halfway
    ("table profiles already exists") or, worse, mix two schemas in one database."""
    if current_revision(connection, storage.schema) is not None:
        return
    tables = foreign_tables(connection, storage.schema)
    if tables:
        where = f"{storage.writer_url.masked()} (schema {storage.schema or 'public'})"
        raise ConfigurationError(foreign_database_advice(where, tables))


def migration_engine(storage: ResolvedStorage) -> Engine:
    """A short-lived engine for migrations: always the writer, never pooled."""
    from sqlalchemy import create_engine

    from reflexio_store.engines import WRITE_OPTION, create_sqlite_engine, postgres_connect_args

    if storage.backend == "sqlite":
        if storage.writer_url.is_memory:
            raise SchemaNotReadyError(
                "An in-memory SQLite database cannot be migrated by a separate engine; "
                "use a file URL, or let the session factory migrate it on first use."
            )
        return create_sqlite_engine(storage.writer_url, storage.writer_pool).execution_options(
            **{WRITE_OPTION: True}
        )
    url, connect_args = postgres_connect_args(
        storage.writer_url.url, application_name="reflexio_store.migrate", pooler=storage.pooler
    )
    return create_engine(
        url, poolclass=pool.NullPool, connect_args=connect_args, hide_parameters=True
    )


def check_pgvector(connection: Connection, where: str) -> None:
    """Make sure the vector extension exists (creating it where allowed), or fail clearly."""
    row = connection.execute(
        text(
            "SELECT default_version, installed_version FROM pg_available_extensions "
            "WHERE name = 'vector'"
        )
    ).first()
    version = connection.execute(text("SHOW server_version")).scalar()
    if row is None:
        raise PgVectorUnavailableError(
            f"The PostgreSQL server at {where} (version {version}) has no pgvector extension "
            "available, and reflexio_store needs it for vector search. Install pgvector on the "
            "server (for example the postgresql-<version>-pgvector package, or a managed "
            "PostgreSQL that ships it), then run the migration again."
        )
    if row.installed_version is None:
        # The extension is database-wide while the migration lock is per schema: organizations
        # migrating for the first time at once must not race to create it.
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"{MIGRATION_LOCK_KEY}:extension"},
        )
        try:
            with connection.begin_nested():
                connection.execute(text("CREATE EXTENSION IF NOT EXISTS vector SCHEMA public"))
        except (ProgrammingError, OperationalError):
            raise PgVectorUnavailableError(
                f"pgvector {row.default_version} is available on {where} but this role may not "
                "create extensions. Ask a superuser to run: CREATE EXTENSION vector;"
            ) from None
    _require_pgvector_version(connection, where)


MIN_PGVECTOR = (0, 8)


def pgvector_version_ok(version: str) -> bool:
    """True for pgvector 0.8 or newer (hnsw.iterative_scan, which filtered search relies on)."""
    parts = []
    for piece in version.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts) >= MIN_PGVECTOR


def _require_pgvector_version(connection: Connection, where: str) -> None:
    installed = connection.execute(
        text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    ).scalar()
    if installed is not None and not pgvector_version_ok(str(installed)):
        raise PgVectorUnavailableError(
            f"pgvector {installed} is installed on {where}; reflexio_store needs 0.8 or newer "
            "(filtered HNSW search uses iterative index scans). Upgrade the package on the server, "
            "then run: ALTER EXTENSION vector UPDATE;"
        )


# -- hooks shared by env.py (alembic check) and the test that compares models with migrations --


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    # FTS5 tables and their shadow tables, and SQLite's vector change log (revision 0006), are
    # created by the migrations, not by the models; the version table is Alembic's
    # (autogenerate only skips it when its schema is None).
    return not (
        type_ == "table"
        and name is not None
        and (
            name.endswith(FTS_TABLE_SUFFIXES)
            or name.startswith("sqlite_")
            or name in (VERSION_TABLE, "vector_changes")
        )
    )


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    if type_ == "index" and not reflected:
        ddl_if = getattr(obj, "_ddl_if", None)
        dialect = getattr(ddl_if, "dialect", None)
        bind_dialect = _current_dialect.get("name")
        if dialect is not None and bind_dialect is not None and dialect != bind_dialect:
            return False
    return True


_current_dialect: dict[str, str] = {}


def set_compare_dialect(name: str) -> None:
    _current_dialect["name"] = name


def compare_type(
    context: Any,
    inspected_column: Any,
    metadata_column: Any,
    inspected_type: Any,
    metadata_type: Any,
) -> bool | None:
    # The embedding size is a deployment setting fixed by the first migration, not a model fact.
    if isinstance(metadata_type, (Embedding, SearchVector)):
        return False
    return None


def autogenerate_options(schema: str | None) -> dict[str, Any]:
    return {
        "include_name": include_name,
        "include_object": include_object,
        "compare_type": compare_type,
        "compare_server_default": False,
        "version_table_schema": schema,
        "render_as_batch": True,
    }


def ensure_schema_ready(storage: ResolvedStorage, engine: Engine) -> None:
    """Called once per session factory: migrate when allowed, else require head."""
    head = head_revision()
    try:
        with engine.connect() as connection:
            current = current_revision(connection, storage.schema)
    except DBAPIError as exc:
        if is_unavailable(exc):
            raise unavailable_error(
                exc, storage.writer_url, "read the schema revision from"
            ) from None
        raise SchemaNotReadyError(
            f"Could not read the schema revision from {storage.writer_url.masked()}: "
            f"{server_reason(exc, storage.writer_url)}."
        ) from None
    if current == head:
        with _translated_errors(storage, "check"):
            check_embedding_dimensions(storage, engine)
    elif storage.auto_migrate:
        if storage.writer_url.is_memory:
            _upgrade_in_place(engine, storage)
        else:
            upgrade(storage)
    else:
        state = "has no reflexio_store tables" if current is None else f"is at revision {current}"
        raise SchemaNotReadyError(
            f"The database {storage.writer_url.masked()} (schema {storage.schema or 'public'}) "
            f"{state}, but this version of reflexio_store needs {head}. {how_to_migrate(storage)}"
        )
    if storage.self_host is not None:
        from reflexio_store.self_host import bootstrap_self_host

        with _translated_errors(storage, "bootstrap the self-host login in"):
            bootstrap_self_host(engine, storage.self_host)


def how_to_migrate(storage: ResolvedStorage) -> str:
    """What works to migrate, whether reflexio_store came from a wheel or a checkout."""
    schema = f" --schema {storage.schema}" if storage.schema else ""
    x_schema = f" -x schema={storage.schema}" if storage.schema else ""
    return (
        f"Migrate it with `reflexio-store migrate{schema}` (add --url, or set REFLEXIO_DB_URL), "
        f'or with Alembic: `alembic -c "$(reflexio-store alembic-ini)"{x_schema} upgrade head`; '
        "or set REFLEXIO_AUTO_MIGRATE=true to migrate on first use."
    )


def _vector_columns() -> list[Any]:
    """Every embedding column, the tables most likely to hold a vector first: a table whose
    rows have none is read to its end by the probe below."""
    from reflexio_store.models import Base

    first = ("profiles", "interactions", "user_playbooks")
    tables = sorted(
        Base.metadata.sorted_tables,
        key=lambda t: first.index(t.name) if t.name in first else len(first),
    )
    return [c for table in tables for c in table.columns if isinstance(c.type, Embedding)]


def check_embedding_dimensions(storage: ResolvedStorage, engine: Engine) -> None:
    """A store migrated for N-dimensional vectors must not be used with another size.

    PostgreSQL: the size is in the column type (profiles'). SQLite stores blobs: every table
    with embeddings is asked for one (interactions may hold vectors while profiles is empty)."""
    stored: int | None = None
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            # atttypmod of a vector(N) column is N.
            stored = connection.execute(
                text(
                    "SELECT a.atttypmod FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = :schema AND c.relname = 'profiles' "
                    "AND a.attname = 'embedding'"
                ),
                {"schema": storage.schema or "public"},
            ).scalar()
        else:
            for column in _vector_columns():
                # float32 blobs: 4 bytes a dimension.
                size = connection.execute(
                    select(func.length(column) / 4).where(column.is_not(None)).limit(1)
                ).scalar()
                if size:
                    stored = int(size)
                    break
    if stored and stored > 0 and int(stored) != storage.embedding_dimensions:
        raise ConfigurationError(
            f"The database {storage.writer_url.masked()} holds {stored}-dimensional embeddings, "
            f"but REFLEXIO_EMBEDDING_DIMENSIONS is {storage.embedding_dimensions}. Set it to "
            f"{stored}, or use a new database (the size is fixed by the first migration)."
        )


def _upgrade_in_place(engine: Engine, storage: ResolvedStorage) -> None:
    """In-memory SQLite lives in one connection: migrate through the factory's own engine."""
    from reflexio_store.engines import WRITE_OPTION

    cfg = alembic_config(storage)
    with _ALEMBIC_LOCK, engine.execution_options(**{WRITE_OPTION: True}).connect() as connection:
        cfg.attributes["connection"] = connection
        raw: Any = connection.connection.dbapi_connection
        # Table rebuilds (revision 0007) need foreign keys off, settable only outside a
        # transaction; this pooled connection serves the application next, so they come back on.
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            command.upgrade(cfg, "head")
            connection.commit()
        finally:
            connection.rollback()
            raw.execute("PRAGMA foreign_keys=ON")
