"""reflexio_store: the data layer under Reflexio.

from reflexio_store import get_session_factory
factory = get_session_factory()          # from the environment; SQLite by default
with factory.writer() as session: ...    # commits on success
with factory.reader() as session: ...    # read-only, on the replica when configured
"""

from reflexio_store.errors import (
    ConfigurationError,
    ConflictError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    DriverMissingError,
    NotFoundError,
    PgVectorUnavailableError,
    PoolTimeoutError,
    ReadOnlySessionError,
    ReflexioStoreError,
    SchemaNotReadyError,
    StatementTimeoutError,
    ValidationError,
)
from reflexio_store.sessions import (
    ReadOnlySession,
    SessionFactory,
    get_session_factory,
    reset_session_factories,
)
from reflexio_store.settings import (
    StorageConfig,
    StorageConfigPostgres,
    StorageConfigSQLite,
    StorageConfigSupabase,
    StorageSettings,
)

__all__ = [
    "ConfigurationError",
    "ConflictError",
    "DatabaseBusyError",
    "DatabaseUnavailableError",
    "DriverMissingError",
    "NotFoundError",
    "PgVectorUnavailableError",
    "PoolTimeoutError",
    "ReadOnlySession",
    "ReadOnlySessionError",
    "ReflexioStoreError",
    "SchemaNotReadyError",
    "SessionFactory",
    "StatementTimeoutError",
    "StorageConfig",
    "StorageConfigPostgres",
    "StorageConfigSQLite",
    "StorageConfigSupabase",
    "StorageSettings",
    "ValidationError",
    "get_session_factory",
    "reset_session_factories",
]
