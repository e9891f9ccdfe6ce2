"""Configuration: environment variables (pydantic-settings) and the StorageConfig models.

The environment fills whatever the code leaves unset; `resolve_storage` merges the two into one
`ResolvedStorage` that the engine factory consumes. Nothing here opens a connection.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from reflexio_store.errors import ConfigurationError
from reflexio_store.self_host import (
    SelfHostLogin,
    deployment_mode,
    self_host_login,
    unknown_deployment_mode,
)
from reflexio_store.urls import DatabaseURL, mask_url, parse_database_url

DEFAULT_SQLITE_DIRECTORY = "~/.reflexio/data"
DEFAULT_SQLITE_FILENAME = "reflexio.db"
DEFAULT_POOL_SIZE = 10
DEFAULT_ACQUIRE_TIMEOUT = 30.0
DEFAULT_SCHEMA = "public"
MAX_ACQUIRE_TIMEOUT = 86_400.0
"""Longest pool acquire timeout (a day): the pool's wait turns it into a deadline, which an
infinite or astronomic value overflows."""
MAX_INT32 = 2**31 - 1
"""PostgreSQL's integer settings (statement_timeout in ms) and our millisecond bounds."""
DEFAULT_EMBEDDING_DIMENSIONS = 512
DEFAULT_SQLITE_MAX_OPEN_DATABASES = 16
DEFAULT_VECTOR_EXACT_ROWS = 20_000
"""PostgreSQL: users with at most this many rows get an exact vector scan (search.postgres)."""


def _masked_repr_args(model: BaseModel) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, value in model.__dict__.items():
        if isinstance(value, str) and name.endswith("url"):
            value = mask_url(value)
        out.append((name, value))
    return out


def _problems(exc: PydanticValidationError) -> str:
    """pydantic's errors as one line, without the values given (they may be secrets)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
        for err in exc.errors(include_input=False, include_url=False)
    )


class _ConfigBase(BaseModel):
    # No __init__ of our own: pydantic would then run it for a config nested in the caller's
    # model and report our error with the whole input (a password) shown. Built directly, a bad
    # config raises pydantic's ValidationError (a ValueError) naming the field, input hidden;
    # given to resolve_storage or from_config as a mapping, our ConfigurationError.
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
    pool_acquire_timeout: float | None = Field(default=None, gt=0, le=MAX_ACQUIRE_TIMEOUT)
    read_db_url: str | None = None
    read_db_urls: tuple[str, ...] | None = None
    read_pool_size: int | None = Field(default=None, ge=1)
    read_pool_acquire_timeout: float | None = Field(default=None, gt=0, le=MAX_ACQUIRE_TIMEOUT)
    read_max_lag_ms: int | None = Field(default=None, ge=0, le=MAX_INT32)


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

    # Not populate_by_name: pydantic-settings would then also read each field's bare name from
    # the environment (DB_URL, POOL_SIZE, STORAGE: names other software sets). Code passes field
    # names; __init__ maps them to the variable names.
    # An empty variable is unset (VAR= in a shell or compose file), as for the conflict check.
    model_config = SettingsConfigDict(
        extra="ignore", hide_input_in_errors=True, case_sensitive=False, env_ignore_empty=True
    )

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        named: dict[str, Any] = {}
        for key, value in values.items():
            alias = fields[key].validation_alias if key in fields else None
            if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str):
                key = alias.choices[0]
            named[key] = value
        super().__init__(**named)

    # None: chosen by the URL (a PostgreSQL URL means PostgreSQL, else the SQLite file).
    storage: Literal["sqlite", "postgres", "supabase"] | None = Field(
        default=None, validation_alias=_env("REFLEXIO_STORAGE")
    )

    @field_validator("storage", "postgres_pooler", mode="before")
    @classmethod
    def _folded(cls, value: Any) -> Any:
        # Variable names are matched in any case; their word values are too (SQLite = sqlite).
        return value.strip().lower() if isinstance(value, str) else value

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
        allow_inf_nan=False,
        gt=0,
        le=MAX_ACQUIRE_TIMEOUT,
        validation_alias=_env("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT"),
    )
    read_db_url: SecretStr | None = Field(
        default=None, validation_alias=_env("REFLEXIO_POSTGRES_READ_DB_URL")
    )
    read_pool_size: int | None = Field(
        default=None, ge=1, validation_alias=_env("REFLEXIO_POSTGRES_READ_POOL_SIZE")
    )
    read_pool_acquire_timeout: float | None = Field(
        default=None,
        allow_inf_nan=False,
        gt=0,
        le=MAX_ACQUIRE_TIMEOUT,
        validation_alias=_env("REFLEXIO_POSTGRES_READ_POOL_ACQUIRE_TIMEOUT"),
    )
    read_max_lag_ms: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT32,
        validation_alias=_env("REFLEXIO_POSTGRES_READ_MAX_LAG_MS"),
    )
    statement_timeout_ms: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT32,
        validation_alias=_env("REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS"),
    )
    vector_exact_rows: int | None = Field(
        default=None,
        ge=0,
        le=MAX_INT32,
        validation_alias=_env("REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS"),
    )
    auto_migrate: bool | None = Field(default=None, validation_alias=_env("REFLEXIO_AUTO_MIGRATE"))
    postgres_pooler: Literal["none", "pgbouncer"] = Field(
        default="none", validation_alias=_env("REFLEXIO_POSTGRES_POOLER")
    )
    sqlite_max_open_databases: int = Field(
        default=DEFAULT_SQLITE_MAX_OPEN_DATABASES,
        ge=1,
        validation_alias=_env("REFLEXIO_SQLITE_MAX_OPEN_DATABASES"),
    )
    embedding_dimensions: int = Field(
        default=DEFAULT_EMBEDDING_DIMENSIONS,
        ge=1,
        le=16000,
        validation_alias=_env("REFLEXIO_EMBEDDING_DIMENSIONS"),
    )
    # Self-host mode (reflexio_store.self_host): one database, one login.
    deployment_mode: str | None = Field(default=None, validation_alias=_env("DEPLOYMENT_MODE"))

    @field_validator("deployment_mode", mode="before")
    @classmethod
    def _deployment_mode(cls, value: Any) -> Any:
        # Folded like the other word values; a value that is none of DEPLOYMENT_MODES (a typo
        # such as selfhosted) is refused, not read as "not self-host". PydanticCustomError: the
        # message is reported under the variable's name, without pydantic's "Value error, ".
        if not isinstance(value, str):
            return value
        try:
            return deployment_mode(value)
        except ConfigurationError:
            pass
        raise PydanticCustomError(
            "deployment_mode", "{problem}", {"problem": unknown_deployment_mode(value)}
        )

    self_host_username: str | None = Field(
        default=None, validation_alias=_env("SELF_HOST_USERNAME")
    )
    self_host_password: SecretStr | None = Field(
        default=None, validation_alias=_env("SELF_HOST_PASSWORD")
    )


DB_URL_VARIABLES = ("REFLEXIO_DB_URL", "DATA_DB_URL", "REFLEXIO_POSTGRES_DB_URL")


def _same_url(raw: str) -> str:
    """A URL as compared between the setting's names: postgres:// and postgresql:// agree."""
    try:
        return parse_database_url(raw).url.render_as_string(hide_password=False)
    except ConfigurationError:
        return raw  # reported when the chosen one is parsed


def _refuse_conflicting_url_aliases() -> None:
    """The writer URL has three names; two of them set to different URLs is a contradiction
    (one would be silently ignored)."""
    # Names in any case, as pydantic-settings reads them (data_db_url is DATA_DB_URL).
    named = [
        name for name, value in os.environ.items() if name.upper() in DB_URL_VARIABLES and value
    ]
    named.sort(key=lambda name: (DB_URL_VARIABLES.index(name.upper()), name))
    given = {name: os.environ[name] for name in named}
    if len({_same_url(url) for url in given.values()}) > 1:
        raise ConfigurationError(
            f"{' and '.join(given)} are set to different database URLs; they are names of the "
            "same setting. Keep one."
        )


def load_settings(**overrides: Any) -> StorageSettings:
    """Read the environment, turning pydantic's errors into ours (inputs are never echoed)."""
    if not {"DB_URL", *DB_URL_VARIABLES} & {key.upper() for key in overrides}:
        _refuse_conflicting_url_aliases()
    problems = None
    try:
        return StorageSettings(**overrides)
    except PydanticValidationError as exc:
        problems = _problems(exc)
    # Raised outside the except block: pydantic's error, which holds the input, is not kept as
    # this one's __context__.
    raise ConfigurationError(
        f"Invalid reflexio_store environment settings: {problems}. "
        "See the configuration table in README.md."
    )


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
    pooler: Literal["pgbouncer"] | None = None
    sqlite_max_open_databases: int = DEFAULT_SQLITE_MAX_OPEN_DATABASES
    self_host: SelfHostLogin | None = None
    replica_urls: tuple[DatabaseURL, ...] = ()
    """Every reader URL (reader_url is the first); reads are spread over them."""
    read_max_lag_ms: int | None = None
    vector_exact_rows: int | None = None
    """PostgreSQL: a user with at most this many rows has their vectors scanned exactly (None:
    DEFAULT_VECTOR_EXACT_ROWS)."""

    @property
    def backend(self) -> str:
        return self.writer_url.backend

    def describe(self) -> dict[str, Any]:
        """A printable summary with every secret masked (PostgreSQL-only settings marked as
        such on SQLite, where they do not apply)."""
        summary = {
            "storage": self.kind,
            "writer": self.writer_url.masked(),
            "reader": ", ".join(u.masked() for u in self.replica_urls) or "(the writer)",
            "read_max_lag_ms": self.read_max_lag_ms,
            "schema": self.schema or DEFAULT_SCHEMA,
            "pool_size": self.writer_pool.size,
            "pool_acquire_timeout": self.writer_pool.acquire_timeout,
            "read_pool_size": self.reader_pool.size,
            "read_pool_acquire_timeout": self.reader_pool.acquire_timeout,
            "pooler": self.pooler or "none",
            "statement_timeout_ms": self.statement_timeout_ms,
            "vector_exact_rows": (
                DEFAULT_VECTOR_EXACT_ROWS
                if self.vector_exact_rows is None
                else self.vector_exact_rows
            ),
            "auto_migrate": self.auto_migrate,
            "embedding_dimensions": self.embedding_dimensions,
            "self_host": f"yes, login {self.self_host.username}" if self.self_host else "no",
        }
        if self.backend == "sqlite":
            for key in _POSTGRES_ONLY_SETTINGS:
                summary[key] = "(PostgreSQL only)"
        return summary


_POSTGRES_ONLY_SETTINGS = (
    "read_max_lag_ms",
    "read_pool_size",
    "read_pool_acquire_timeout",
    "pooler",
    "statement_timeout_ms",
    "vector_exact_rows",
)
_POSTGRES_ONLY_VARIABLES = tuple(f"REFLEXIO_POSTGRES_{k.upper()}" for k in _POSTGRES_ONLY_SETTINGS)


def ignored_variables(storage: ResolvedStorage) -> list[str]:
    """Environment variables that are set but do not apply to `storage` (PostgreSQL-only
    settings with a SQLite database)."""
    if storage.backend != "sqlite":
        return []
    present = {name.upper() for name, value in os.environ.items() if value}
    return [name for name in _POSTGRES_ONLY_VARIABLES if name in present]


def expand_home(path: Path, what: str) -> Path:
    """`~` and `~user` expanded; ConfigurationError when there is no such home directory."""
    try:
        return path.expanduser()
    except RuntimeError:
        raise ConfigurationError(
            f"{what} starts with '~', but that user's home directory cannot be determined; "
            "give an absolute path."
        ) from None


def default_sqlite_url(directory: str) -> str:
    path = expand_home(Path(directory), "SQLITE_FILE_DIRECTORY")
    return f"sqlite:///{path / DEFAULT_SQLITE_FILENAME}"


# Plain ASCII identifiers only: one character is one byte, so the 63-byte limit of PostgreSQL
# names (longer names are silently truncated, and two organizations could share a schema) is a
# 63-character limit, and no Unicode normalisation can make two names meet.
_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
MAX_IDENTIFIER_BYTES = 63


def validate_schema(schema: str | None) -> str | None:
    """None for the default schema; else the name, if it is a plain identifier that is not one
    of PostgreSQL's own schemas. Raises ConfigurationError before anything touches a database."""
    if schema is None or schema == DEFAULT_SCHEMA:
        return None
    if not isinstance(schema, str) or not _SCHEMA_NAME.fullmatch(schema):
        raise ConfigurationError(
            f"Invalid PostgreSQL schema name {schema!r}: use ASCII letters, digits and "
            f"underscores, not starting with a digit, at most {MAX_IDENTIFIER_BYTES} characters."
        )
    if len(schema.encode()) > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"The PostgreSQL schema name {schema[:20]!r}... is {len(schema)} characters long; "
            f"PostgreSQL keeps only the first {MAX_IDENTIFIER_BYTES}, so two such names could "
            "share one schema. Use a shorter name."
        )
    lowered = schema.lower()
    if lowered.startswith("pg_") or lowered == "information_schema":
        raise ConfigurationError(
            f"The PostgreSQL schema name {schema!r} is reserved for PostgreSQL's system "
            "schemas (pg_*, information_schema); choose another, for example org_<id>."
        )
    return schema


WRITER_URL_VARIABLES = "REFLEXIO_DB_URL (or DATA_DB_URL / REFLEXIO_POSTGRES_DB_URL)"


def _from_environment(env: StorageSettings) -> StorageConfig:
    """The StorageConfig the environment describes. A PostgreSQL URL selects PostgreSQL unless
    REFLEXIO_STORAGE says otherwise; a contradiction is an error naming both variables."""
    raw_writer = env.db_url.get_secret_value() if env.db_url is not None else None
    writer = parse_database_url(raw_writer, WRITER_URL_VARIABLES) if raw_writer else None
    kind = env.storage
    if kind is None:
        kind = "postgres" if writer is not None and writer.backend == "postgresql" else "sqlite"
    if kind == "sqlite":
        if writer is not None and writer.backend != "sqlite":
            raise ConfigurationError(
                f"REFLEXIO_STORAGE=sqlite but {WRITER_URL_VARIABLES} is a PostgreSQL URL "
                f"({writer.masked()}). Unset REFLEXIO_STORAGE (or set it to postgres) to use "
                "PostgreSQL, or give a sqlite:/// URL."
            )
        return StorageConfigSQLite(db_url=raw_writer)
    if raw_writer is None or writer is None:
        raise ConfigurationError(
            f"REFLEXIO_STORAGE={kind} needs a database URL: set REFLEXIO_DB_URL "
            "(or DATA_DB_URL) to postgresql://user:password@host:5432/database."
        )
    if writer.backend != "postgresql":
        raise ConfigurationError(
            f"REFLEXIO_STORAGE={kind} but {WRITER_URL_VARIABLES} is a SQLite URL "
            f"({writer.masked()}). Give a postgresql:// URL, or set REFLEXIO_STORAGE=sqlite."
        )
    return StorageConfigPostgres(db_url=raw_writer)


def _refuse_postgres_only_settings(env: StorageSettings) -> None:
    """Settings that only PostgreSQL can honour are an error with SQLite, not ignored."""
    if env.read_db_url is not None:
        raise ConfigurationError(
            "REFLEXIO_POSTGRES_READ_DB_URL is set but the environment selects SQLite "
            f"(REFLEXIO_STORAGE / {WRITER_URL_VARIABLES}): SQLite has no replica. Unset it, or "
            "configure PostgreSQL."
        )
    if validate_schema(env.postgres_schema) is not None:
        raise ConfigurationError(
            f"REFLEXIO_POSTGRES_SCHEMA={env.postgres_schema} is set but the environment selects "
            f"SQLite (REFLEXIO_STORAGE / {WRITER_URL_VARIABLES}): SQLite keeps one organization "
            "per file. Unset it, or configure PostgreSQL."
        )


# A comma separates two reader URLs only where a new scheme follows: libpq's multi-host form
# (postgresql://h1:5432,h2:5432/db) keeps its commas.
_URL_SEPARATOR = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.-]*://)")


def split_urls(raw: str | None) -> list[str]:
    """Reader URLs from one setting: separated by whitespace or by commas."""
    return [part for part in _URL_SEPARATOR.split(raw or "") if part.strip(" ,")]


_CONFIG_CLASSES: dict[str, type[StorageConfig]] = {
    "sqlite": StorageConfigSQLite,
    "postgres": StorageConfigPostgres,
    "supabase": StorageConfigSupabase,
}


def as_storage_config(config: object) -> StorageConfig | None:
    """`config` as a StorageConfig model: a model as it is, or a mapping of a model's fields
    with its `type` ("sqlite", "postgres" or "supabase"); anything else is a ConfigurationError."""
    if config is None or isinstance(config, tuple(_CONFIG_CLASSES.values())):
        return config  # type: ignore[return-value]
    if isinstance(config, Mapping):
        kind = config.get("type")
        model = _CONFIG_CLASSES.get(kind) if isinstance(kind, str) else None
        if model is None:
            got = (
                repr(kind)
                if isinstance(kind, str) and re.fullmatch(r"[A-Za-z_]{1,20}", kind)
                else "none"
                if kind is None
                else f"a {type(kind).__name__} that is not one of them"
            )
            raise ConfigurationError(
                "A storage configuration given as a mapping needs its 'type': one of "
                f"{', '.join(map(repr, _CONFIG_CLASSES))} (got {got})."
            )
        if not all(isinstance(key, str) for key in config):
            raise ConfigurationError("A storage configuration's keys are field names (text).")
        problems = None
        try:
            return model(**config)
        except PydanticValidationError as exc:
            problems = _problems(exc)
        raise ConfigurationError(  # outside the except: pydantic's error holds the input
            f"Invalid {model.__name__}: {problems}. Fields: {', '.join(model.model_fields)}."
        )
    raise ConfigurationError(
        "A storage configuration is a StorageConfigSQLite, StorageConfigPostgres or "
        "StorageConfigSupabase, or a mapping of one's fields with its 'type'; got "
        f"{type(config).__name__}."
    )


def resolve_storage(
    config: StorageConfig | None = None, settings: StorageSettings | None = None
) -> ResolvedStorage:
    """Merge a StorageConfig (may be None; a mapping with a `type` is read as one) with the
    environment into a ResolvedStorage."""
    config = as_storage_config(config)
    if settings is not None and not isinstance(settings, StorageSettings):
        raise ConfigurationError(
            f"settings must be a StorageSettings, not {type(settings).__name__}."
        )
    env = settings if settings is not None else load_settings()

    def secret(value: SecretStr | None) -> str | None:
        return value.get_secret_value() if value is not None else None

    self_host = None
    if config is None:
        config = _from_environment(env)
        if isinstance(config, StorageConfigSQLite):
            # A StorageConfig given in code overrides these; the environment alone contradicts.
            _refuse_postgres_only_settings(env)
        # Self-host describes the environment's database only (not a demo or copy target).
        self_host = self_host_login(
            env.deployment_mode, env.self_host_username, env.self_host_password
        )

    if isinstance(config, StorageConfigSQLite):
        raw = config.db_url or default_sqlite_url(
            config.sqlite_file_directory or env.sqlite_file_directory
        )
        writer = parse_database_url(raw, "The SQLite storage's db_url")
        if writer.backend != "sqlite":
            raise ConfigurationError(
                f"A StorageConfigSQLite was given a PostgreSQL URL ({writer.masked()}); use "
                "StorageConfigPostgres for PostgreSQL."
            )
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
            kind="sqlite",
            sqlite_max_open_databases=env.sqlite_max_open_databases,
            self_host=self_host,
        )

    if isinstance(config, StorageConfigSupabase):
        pg = StorageConfigPostgres(db_url=config.db_url, schema=config.schema)
        kind = "supabase"
    else:
        pg = config
        kind = "supabase" if env.storage == "supabase" else "postgres"
    writer = parse_database_url(pg.db_url, f"The {kind} db_url")
    if writer.backend != "postgresql":
        raise ConfigurationError(
            f"The {kind} storage was given a SQLite URL ({writer.masked()}); use a "
            "postgresql:// URL, or StorageConfigSQLite for SQLite."
        )
    raw_readers = split_urls(pg.read_db_url) + list(pg.read_db_urls or ())
    if pg.read_db_url is None and pg.read_db_urls is None:
        raw_readers = split_urls(secret(env.read_db_url))
    replicas: list[DatabaseURL] = []
    for raw_reader in raw_readers:
        reader = parse_database_url(raw_reader, "The reader URL (REFLEXIO_POSTGRES_READ_DB_URL)")
        if reader.backend != writer.backend:
            raise ConfigurationError(
                f"The reader URL REFLEXIO_POSTGRES_READ_DB_URL ({reader.masked()}) must be a "
                f"PostgreSQL URL like the writer ({writer.masked()})."
            )
        if reader.url != writer.url and reader not in replicas:
            replicas.append(reader)
    size = pg.pool_size or env.pool_size
    timeout = pg.pool_acquire_timeout or env.pool_acquire_timeout
    writer_pool = PoolSettings(size, timeout)
    reader_pool = PoolSettings(
        pg.read_pool_size or env.read_pool_size or size,
        pg.read_pool_acquire_timeout or env.read_pool_acquire_timeout or timeout,
    )
    return ResolvedStorage(
        writer_url=writer,
        reader_url=replicas[0] if replicas else None,
        replica_urls=tuple(replicas),
        read_max_lag_ms=(
            pg.read_max_lag_ms if pg.read_max_lag_ms is not None else env.read_max_lag_ms
        ),
        schema=validate_schema(pg.schema if pg.schema is not None else env.postgres_schema),
        writer_pool=writer_pool,
        reader_pool=reader_pool,
        statement_timeout_ms=env.statement_timeout_ms,
        vector_exact_rows=env.vector_exact_rows,
        # PostgreSQL schemas are migrated deliberately (reflexio-store migrate) unless asked.
        auto_migrate=False if env.auto_migrate is None else env.auto_migrate,
        embedding_dimensions=env.embedding_dimensions,
        kind=kind,
        pooler="pgbouncer" if env.postgres_pooler == "pgbouncer" else None,
        sqlite_max_open_databases=env.sqlite_max_open_databases,
        self_host=self_host,
    )
