"""The exceptions reflexio_store raises. Every message says what was wrong and how to fix it."""

from __future__ import annotations

from sqlalchemy.exc import DontWrapMixin


class ReflexioStoreError(DontWrapMixin, Exception):
    """Base class of every error raised by reflexio_store.

    DontWrapMixin: raised while SQLAlchemy binds parameters (a naive datetime, a bad embedding),
    it reaches the caller as itself, not wrapped in a StatementError.
    """


class ConfigurationError(ReflexioStoreError, ValueError):
    """A setting or URL is invalid."""


class DriverMissingError(ConfigurationError):
    """A database driver needed by the configured URL is not installed."""


class PoolTimeoutError(ReflexioStoreError, TimeoutError):
    """No pooled connection became free within the acquire timeout."""


class DatabaseUnavailableError(ReflexioStoreError, ConnectionError):
    """The database could not be reached, refused the connection (credentials, starting up,
    shutting down) or dropped it. The message names the masked URL and the server's reason."""


class DatabaseBusyError(ReflexioStoreError, TimeoutError):
    """SQLite stayed locked by another writer past the busy timeout (the setting is named)."""


class StatementTimeoutError(ReflexioStoreError, TimeoutError):
    """PostgreSQL cancelled a statement that ran past its statement timeout; nothing it would
    have written was committed."""


class ReadOnlySessionError(ReflexioStoreError):
    """A write was attempted through a reader session."""


class SchemaNotReadyError(ReflexioStoreError):
    """The database schema is not at the revision this version of reflexio_store needs."""


class PgVectorUnavailableError(ReflexioStoreError):
    """The PostgreSQL server has no pgvector extension available."""


class ValidationError(ReflexioStoreError, ValueError):
    """Input to a store operation is invalid; nothing was written."""


class NotFoundError(ReflexioStoreError, LookupError):
    """A row that an operation needs does not exist."""


class ConflictError(ReflexioStoreError):
    """An operation conflicts with existing data (a duplicate key, a lock held by another owner)."""
