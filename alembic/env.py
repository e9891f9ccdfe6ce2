"""Alembic environment for reflexio_store.

The database comes from `config.attributes["storage"]` (code, tests, the CLI), else `-x url=...`,
else the environment (REFLEXIO_DB_URL and friends). Migrations always run on the writer, inside one
transaction: on PostgreSQL under an advisory lock, so concurrent upgraders wait and then find the
work done; on SQLite under BEGIN IMMEDIATE, which serialises them the same way.
"""

from __future__ import annotations

from logging.config import fileConfig

from sqlalchemy import text

from alembic import context
from reflexio_store.migrations import (
    MIGRATION_LOCK_KEY,
    autogenerate_options,
    check_pgvector,
    migration_engine,
    refuse_foreign_tables,
    set_compare_dialect,
    version_table_schema,
)
from reflexio_store.models import Base
from reflexio_store.settings import (
    ResolvedStorage,
    StorageConfigPostgres,
    StorageConfigSQLite,
    resolve_storage,
    validate_schema,
)
from reflexio_store.urls import parse_database_url

config = context.config
x_args = context.get_x_argument(as_dictionary=True)
if config.cmd_opts is not None and config.config_file_name is not None:
    # Alembic's own command line: log progress as alembic.ini says. Not when called from code
    # (reflexio-store, the session factory, tests): the application owns its logging there.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _storage() -> ResolvedStorage:
    storage = config.attributes.get("storage")
    if storage is not None:
        return storage  # type: ignore[no-any-return]
    url = x_args.get("url")
    if url is None:
        return resolve_storage()
    if parse_database_url(url).backend == "sqlite":
        return resolve_storage(StorageConfigSQLite(db_url=url))
    return resolve_storage(StorageConfigPostgres(db_url=url))


storage = _storage()
# Validated: the name ends up inside quoted DDL (CREATE SCHEMA, search_path).
schema = validate_schema(x_args.get("schema") or storage.schema)
config.attributes.setdefault("embedding_dimensions", storage.embedding_dimensions)
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    set_compare_dialect(storage.backend)
    version_schema = version_table_schema(storage.backend, schema)
    context.configure(
        url=storage.writer_url.url,
        target_metadata=target_metadata,
        literal_binds=True,
        transactional_ddl=True,
        **autogenerate_options(version_schema),
    )
    with context.begin_transaction():
        if schema:
            context.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        if version_schema:
            context.execute(f'SET search_path TO "{version_schema}", public')
        context.run_migrations()


def _run(connection: object) -> None:
    from sqlalchemy.engine import Connection

    assert isinstance(connection, Connection)
    set_compare_dialect(connection.dialect.name)
    version_schema = version_table_schema(connection.dialect.name, schema)
    if version_schema is not None:
        connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
            {"key": f"{MIGRATION_LOCK_KEY}:{version_schema}"},
        )
        check_pgvector(connection, storage.writer_url.masked())
        if schema:
            connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        # Unqualified DDL in the revisions lands in the migrated schema; the rest of the path
        # (public) still resolves the vector type.
        path = connection.exec_driver_sql("SHOW search_path").scalar()
        connection.exec_driver_sql(f'SET LOCAL search_path TO "{version_schema}", {path}')
        # Reflection (alembic check) must look at this schema, not the role's default.
        connection.dialect.default_schema_name = version_schema
    refuse_foreign_tables(connection, storage)
    # The version table is addressed schema-qualified: through the search path an organization
    # would otherwise find public's version table once public is migrated.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        transactional_ddl=True,
        **autogenerate_options(version_schema),
    )
    context.run_migrations()


def _sqlite_foreign_keys_off(connection: object) -> None:
    """SQLite table rebuilds (revision 0007) must not fire ON DELETE CASCADE when the old table
    is dropped, and PRAGMA foreign_keys is ignored inside a transaction: on this migration's own
    connection (disposed afterwards) they are turned off before BEGIN. A revision that rebuilds
    tables checks the foreign keys itself. A connection passed in by the caller is left as it is
    (revision 0007 refuses to run on one with foreign keys on)."""
    from sqlalchemy.engine import Connection

    assert isinstance(connection, Connection)
    if connection.dialect.name == "sqlite" and not connection.in_transaction():
        connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine = migration_engine(storage)
    try:
        with engine.connect() as connection:
            _sqlite_foreign_keys_off(connection)  # this engine is disposed afterwards
            with connection.begin():
                _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
