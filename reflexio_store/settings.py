"""Configuration: environment variables (pydantic-settings) and the StorageConfig models.

The environment fills whatever the code leaves unset; `resolve_storage` merges the two into one
`ResolvedStorage` that the engine factory consumes. Nothing here opens a connection.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reflexio_store.errors import ConfigurationError
from reflexio_store.urls import DatabaseURL, mask_url, parse_database_url

DEFAULT_SQLITE_DIRECTORY = "~/.reflexio/data"
DEFAULT_SQLITE_FILENAME = "reflexio.db"
DEFAULT_POOL_SIZE = 10
DEFAULT_ACQUIRE_TIMEOUT = 30.0
DEFAULT_SCHEMA = "public"
DEFAULT_EMBEDDING_DIMENSIONS = 512


def _masked_repr_args(model: BaseModel) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in model.__dict__.items():
        if isinstance(value, str) and name.endswith("url"):
            value = mask_url(value)
        out.append((name, value))
    return out


class _ConfigBase(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True, frozen=True)

    def __repr_args__(self) -> Any:
        return _masked_repr_args(self)


# Reflexio's public field is named `schema`, which BaseModel once used for a (deprecated) method.
warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)


class StorageConfigSQLite(_ConfigBase):
    """The embedded default: one SQLite file (or `sqlite:///:memory:`)."""

    type: Literal["sqlite"] = "sqlite"
    db_url: str | None = None
    sqlite_file_directory: str | None = None


class StorageConfigPostgres(_ConfigBase):
    """A customer-owned PostgreSQL database with pgvector; optionally a reader (replica) URL."""

    type: Literal["postgres"] = "postgres"
    db_url: str
    schema: str | None = None  # type: ignore[assignment]
    pool_size: int | None = Field(default=None, ge=1)
    pool_acquire_timeout: float | None = Field(default=None, gt=0)
    read_db_url: str | None = None
    read_pool_size: int | None = Field(default=None, ge=1)
    read_pool_acquire_timeout: float | None = Field(default=None, gt=0)


class StorageConfigSupabase(_ConfigBase):
    """Supabase settings. reflexio_store talks to `db_url` as a plain PostgreSQL database;
    url/key/read_url/read_key are kept for Reflexio's PostgREST clients and are not used here."""

    type: Literal["supabase"] = "supabase"
    url: str
    key: SecretStr
    db_url: str
    read_url: str | None = None
    read_key: SecretStr | None = None
    schema: str | None = None  # type: ignore[assignment]


StorageConfig = StorageConfigSQLite | StorageConfigPostgres | StorageConfigSupabase


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class StorageSettings(BaseSettings):
    """Every environment variable reflexio_store reads. See README.md for the table."""

    model_config = SettingsConfigDict(
        extra="ignore", hide_input_in_errors=True, case_sensitive=False, populate_by_name=True
    )

    storage: Literal["sqlite", "postgres", "supabase"] = Field(
        default="sqlite", validation_alias=_env("REFLEXIO_STORAGE")
    )
    db_url: SecretStr | None = Field(
        default=None,
        validation_alias=_env("REFLEXIO_DB_URL", "DATA_DB_URL", "REFLEXIO_POSTGRES_DB_URL"),
    )
    sqlite_file_directory: str = Field(
        default=DEFAULT_SQLITE_DIRECTORY, validation_alias=_env("SQLITE_FILE_DIRECTORY")
    )
    postgres_schema: str = Field(
        default=DEFAULT_SCHEMA, validation_alias=_env("REFLEXIO_POSTGRES_SCHEMA")
    )
    pool_size: int = Field(
        default=DEFAULT_POOL_SIZE, ge=1, validation_alias=_env("REFLEXIO_POSTGRES_POOL_SIZE")
    )
    pool_acquire_timeout: float = Field(
        default=DEFAULT_ACQUIRE_TIMEOUT,
        gt=0,
        validation_alias=_env("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT"),
    )
    read_db_url: SecretStr | None = Field(
        default=None, validation_alias=_env("REFLEXIO_POSTGRES_READ_DB_URL")
    )
    read_pool_size: int | None = Field(
        default=None, ge=1, validation_alias=_env("REFLEXIO_POSTGRES_READ_POOL_SIZE")
    )
    read_pool_acquire_timeout: float | None = Field(
        default=None, gt=0, validation_alias=_env("REFLEXIO_POSTGRES_READ_POOL_ACQUIRE_TIMEOUT")
    )
    statement_timeout_ms: int | None = Field(
        default=None, ge=0, validation_alias=_env("REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS")
    )
    auto_migrate: bool | None = Field(default=None, validation_alias=_env("REFLEXIO_AUTO_MIGRATE"))
    embedding_dimensions: int = Field(
        default=DEFAULT_EMBEDDING_DIMENSIONS,
        ge=1,
        le=16000,
        validation_alias=_env("REFLEXIO_EMBEDDING_DIMENSIONS"),
    )


def load_settings(**overrides: Any) -> StorageSettings:
    """Read the environment, turning pydantic's errors into ours (inputs are never echoed)."""
    try:
        return StorageSettings(**overrides)
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(
            f"Invalid reflexio_store environment settings: {problems}. "
            "See the configuration table in README.md."
        ) from None


@dataclass(frozen=True)
class PoolSettings:
    size: int
    acquire_timeout: float


@dataclass(frozen=True)
class ResolvedStorage:
    """Everything an engine factory needs, with defaults applied and URLs validated."""

    writer_url: DatabaseURL
    reader_url: DatabaseURL | None
    schema: str | None
    writer_pool: PoolSettings
    reader_pool: PoolSettings
    statement_timeout_ms: int | None
    auto_migrate: bool
    embedding_dimensions: int
    kind: str = field(default="sqlite")

    @property
    def backend(self) -> str:
        return self.writer_url.backend

    def describe(self) -> dict[str, Any]:
        """A printable summary with every secret masked."""
        return {
            "storage": self.kind,
            "writer": self.writer_url.masked(),
            "reader": self.reader_url.masked() if self.reader_url else "(the writer)",
            "schema": self.schema or DEFAULT_SCHEMA,
            "pool_size": self.writer_pool.size,
            "pool_acquire_timeout": self.writer_pool.acquire_timeout,
            "read_pool_size": self.reader_pool.size,
            "read_pool_acquire_timeout": self.reader_pool.acquire_timeout,
            "statement_timeout_ms": self.statement_timeout_ms,
            "auto_migrate": self.auto_migrate,
            "embedding_dimensions": self.embedding_dimensions,
        }


def default_sqlite_url(directory: str) -> str:
    path = Path(directory).expanduser()
    return f"sqlite:///{path / DEFAULT_SQLITE_FILENAME}"


def validate_schema(schema: str | None) -> str | None:
    """None for the default schema; else the name, if it is a plain identifier."""
    if schema is None or schema == DEFAULT_SCHEMA:
        return None
    if not schema.replace("_", "").isalnum() or schema[0].isdigit() or len(schema) > 63:
        raise ConfigurationError(
            f"Invalid PostgreSQL schema name {schema!r}: use letters, digits and underscores, "
            "not starting with a digit, at most 63 characters."
        )
    return schema


def resolve_storage(
    config: StorageConfig | None = None, settings: StorageSettings | None = None
) -> ResolvedStorage:
    """Merge a StorageConfig (may be None) with the environment into a ResolvedStorage."""
    env = settings if settings is not None else load_settings()

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    if config is None:
        kind = env.storage
        raw_writer = secret(env.db_url)
        if kind == "sqlite" or raw_writer is None:
            if kind != "sqlite" and raw_writer is None:
                raise ConfigurationError(
                    f"REFLEXIO_STORAGE={kind} needs a database URL: set REFLEXIO_DB_URL "
                    "(or DATA_DB_URL) to postgresql://user:password@host:5432/database."
                )
            config = StorageConfigSQLite(db_url=raw_writer)
        else:
            config = StorageConfigPostgres(db_url=raw_writer)

    if isinstance(config, StorageConfigSQLite):
        raw = config.db_url or default_sqlite_url(
            config.sqlite_file_directory or env.sqlite_file_directory
        )
        writer = parse_database_url(raw)
        pool = PoolSettings(env.pool_size, env.pool_acquire_timeout)
        return ResolvedStorage(
            writer_url=writer,
            reader_url=None,
            schema=None,
            writer_pool=pool,
            reader_pool=pool,
            statement_timeout_ms=env.statement_timeout_ms,
            auto_migrate=True if env.auto_migrate is None else env.auto_migrate,
            embedding_dimensions=env.embedding_dimensions,
            kind=config.type if writer.backend == "sqlite" else "postgres",
        )

    if isinstance(config, StorageConfigSupabase):
        pg = StorageConfigPostgres(db_url=config.db_url, schema=config.schema)
        kind = "supabase"
    else:
        pg = config
        kind = "postgres"
    writer = parse_database_url(pg.db_url)
    raw_reader = pg.read_db_url or secret(env.read_db_url)
    reader = parse_database_url(raw_reader) if raw_reader else None
    if reader is not None and reader.backend != writer.backend:
        raise ConfigurationError(
            f"The reader URL ({reader.masked()}) must use the same database kind as the writer "
            f"({writer.masked()})."
        )
    if reader is not None and reader.url == writer.url:
        reader = None
    size = pg.pool_size or env.pool_size
    timeout = pg.pool_acquire_timeout or env.pool_acquire_timeout
    writer_pool = PoolSettings(size, timeout)
    reader_pool = PoolSettings(
        pg.read_pool_size or env.read_pool_size or size,
        pg.read_pool_acquire_timeout or env.read_pool_acquire_timeout or timeout,
    )
    default_migrate = writer.backend == "sqlite"
    return ResolvedStorage(
        writer_url=writer,
        reader_url=reader,
        schema=validate_schema(pg.schema if pg.schema is not None else env.postgres_schema),
        writer_pool=writer_pool,
        reader_pool=reader_pool,
        statement_timeout_ms=env.statement_timeout_ms,
        auto_migrate=default_migrate if env.auto_migrate is None else env.auto_migrate,
        embedding_dimensions=env.embedding_dimensions,
        kind=kind,
    )
