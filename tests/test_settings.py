"""Configuration: environment variables, StorageConfig models, URL forms, and secret masking."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reflexio_store import (
    ConfigurationError,
    DriverMissingError,
    SessionFactory,
    StorageConfigPostgres,
    StorageConfigSQLite,
    StorageConfigSupabase,
)
from reflexio_store.settings import load_settings, resolve_storage
from reflexio_store.urls import parse_database_url

SECRET = "s3cr3t-Pa55"


def test_defaults_are_the_embedded_sqlite_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    storage = resolve_storage()
    assert storage.backend == "sqlite"
    assert storage.writer_url.sqlite_path == Path("/home/someone/.reflexio/data/reflexio.db")
    assert storage.auto_migrate is True
    assert storage.embedding_dimensions == 512
    assert storage.writer_pool.size == 10 and storage.writer_pool.acquire_timeout == 30.0
    assert storage.reader_url is None


def test_sqlite_file_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SQLITE_FILE_DIRECTORY", str(tmp_path / "d"))
    assert resolve_storage().writer_url.sqlite_path == tmp_path / "d" / "reflexio.db"


@pytest.mark.parametrize("name", ["REFLEXIO_DB_URL", "DATA_DB_URL", "REFLEXIO_POSTGRES_DB_URL"])
def test_writer_url_aliases(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    monkeypatch.setenv(name, f"postgres://u:{SECRET}@db.example:5432/app")
    storage = resolve_storage()
    assert storage.backend == "postgresql"
    assert storage.writer_url.url.drivername == "postgresql+psycopg"
    assert storage.writer_url.url.host == "db.example"
    assert storage.auto_migrate is False


def test_postgres_environment_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "REFLEXIO_STORAGE": "postgres",
        "REFLEXIO_DB_URL": f"postgresql://u:{SECRET}@primary/app",
        "REFLEXIO_POSTGRES_SCHEMA": "org_42",
        "REFLEXIO_POSTGRES_POOL_SIZE": "7",
        "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT": "2.5",
        "REFLEXIO_POSTGRES_READ_DB_URL": f"postgresql://u:{SECRET}@replica/app",
        "REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS": "1500",
        "REFLEXIO_AUTO_MIGRATE": "true",
        "REFLEXIO_EMBEDDING_DIMENSIONS": "768",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    storage = resolve_storage()
    assert storage.schema == "org_42"
    assert storage.writer_pool.size == 7 and storage.writer_pool.acquire_timeout == 2.5
    # Reader pool settings default to the writer's.
    assert storage.reader_pool.size == 7 and storage.reader_pool.acquire_timeout == 2.5
    assert storage.reader_url is not None and storage.reader_url.url.host == "replica"
    assert storage.statement_timeout_ms == 1500
    assert storage.auto_migrate is True
    assert storage.embedding_dimensions == 768
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_POOL_SIZE", "3")
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_POOL_ACQUIRE_TIMEOUT", "0.5")
    storage = resolve_storage()
    assert storage.reader_pool.size == 3 and storage.reader_pool.acquire_timeout == 0.5


def test_code_config_wins_and_environment_fills_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_SIZE", "4")
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_POOL_SIZE", "2")
    config = StorageConfigPostgres(
        db_url="postgresql://u@h/db", schema="tenant_a", pool_acquire_timeout=9.0
    )
    storage = resolve_storage(config)
    assert storage.schema == "tenant_a"
    assert storage.writer_pool.size == 4 and storage.writer_pool.acquire_timeout == 9.0
    assert storage.reader_pool.size == 2 and storage.reader_pool.acquire_timeout == 9.0


def test_supabase_uses_db_url_as_postgres() -> None:
    config = StorageConfigSupabase(
        url="https://x.supabase.co", key=SECRET, db_url="postgresql://u@h/db", schema="org_1"
    )
    storage = resolve_storage(config)
    assert storage.backend == "postgresql" and storage.kind == "supabase"
    assert storage.schema == "org_1"
    assert SECRET not in repr(config)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("sqlite:///rel/dir/x.db", Path("rel/dir/x.db")),
        ("sqlite:////abs/path/x.db", Path("/abs/path/x.db")),
    ],
)
def test_sqlite_url_forms(raw: str, path: Path) -> None:
    url = parse_database_url(raw)
    assert url.backend == "sqlite" and url.sqlite_path == path


def test_memory_url() -> None:
    assert parse_database_url("sqlite:///:memory:").is_memory


@pytest.mark.parametrize(
    "raw", ["postgres://u:p@h/db", "postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"]
)
def test_postgres_url_forms_mean_psycopg(raw: str) -> None:
    url = parse_database_url(raw)
    assert url.backend == "postgresql" and url.url.drivername == "postgresql+psycopg"


@pytest.mark.parametrize(
    "raw", [f"mysql://u:{SECRET}@h/db", f"postgresql+asyncpg://u:{SECRET}@h/db", "nonsense"]
)
def test_unsupported_url_gets_one_clear_error(raw: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_database_url(raw)
    message = str(info.value)
    assert "sqlite:////absolute/path.db" in message and "postgresql://" in message
    assert SECRET not in message


def test_missing_psycopg_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "psycopg" else real(name, *a)
    )
    with pytest.raises(DriverMissingError, match=r"pip install 'psycopg\[binary\]"):
        parse_database_url("postgresql://u@h/db")


def test_passwords_never_in_reprs_or_descriptions() -> None:
    config = StorageConfigPostgres(
        db_url=f"postgresql://u:{SECRET}@h/db", read_db_url=f"postgresql://u:{SECRET}@r/db"
    )
    storage = resolve_storage(config)
    factory = SessionFactory(storage)
    for text in (repr(config), str(config), repr(storage), str(storage.describe()), repr(factory)):
        assert SECRET not in text
        assert "***" in text


def test_invalid_settings_are_reported_without_echoing_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_SIZE", f"{SECRET}")
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    assert "POOL_SIZE" in str(info.value).upper()
    assert SECRET not in str(info.value)


def test_postgres_storage_without_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    with pytest.raises(ConfigurationError, match="REFLEXIO_DB_URL"):
        resolve_storage()


def test_bad_schema_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="schema"):
        resolve_storage(StorageConfigPostgres(db_url="postgresql://u@h/db", schema="x; drop"))


def test_sqlite_config_object() -> None:
    storage = resolve_storage(StorageConfigSQLite(db_url="sqlite:///:memory:"))
    assert storage.writer_url.is_memory


# -- schema names: validated before anything touches a database --------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "é" * 31 + "ab",  # 33 characters, 64 UTF-8 bytes: PostgreSQL would truncate both ...
        "é" * 31 + "ac",  # ... to the same 63-byte schema
        "a" * 64,
        "pg_temp",
        "pg_catalog",
        "PG_anything",
        "information_schema",
        "Information_Schema",
        "1org",
        "org-1",
        "org 1",
        'org"1',
        "",
    ],
)
def test_schema_names_that_could_collide_or_hit_system_schemas(name: str) -> None:
    with pytest.raises(ConfigurationError, match="schema name"):
        resolve_storage(StorageConfigPostgres(db_url="postgresql://u@h/db", schema=name))


def test_schema_names_at_the_limit_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a" * 63, "org_42", "_x", "Org_A"):
        assert (
            resolve_storage(StorageConfigPostgres(db_url="postgresql://u@h/db", schema=name)).schema
            == name
        )
    monkeypatch.setenv("REFLEXIO_DB_URL", "postgresql://u@h/db")
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", "pg_toast")
    with pytest.raises(ConfigurationError, match="reserved"):
        resolve_storage()


# -- configuration is never silently dropped ----------------------------------------------------


def test_a_postgres_url_alone_selects_postgres_with_its_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLEXIO_DB_URL", f"postgresql://u:{SECRET}@primary/app")
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_DB_URL", f"postgresql://u:{SECRET}@replica/app")
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", "org_7")
    storage = resolve_storage()
    assert storage.backend == "postgresql" and storage.kind == "postgres"
    assert storage.reader_url is not None and storage.reader_url.url.host == "replica"
    assert storage.schema == "org_7"
    assert storage.auto_migrate is False  # the documented PostgreSQL default


@pytest.mark.parametrize(
    ("env", "named"),
    [
        (
            {"REFLEXIO_STORAGE": "postgres", "REFLEXIO_DB_URL": "sqlite:///x.db"},
            ["REFLEXIO_STORAGE", "REFLEXIO_DB_URL"],
        ),
        (
            {"REFLEXIO_STORAGE": "sqlite", "DATA_DB_URL": f"postgresql://u:{SECRET}@h/db"},
            ["REFLEXIO_STORAGE", "DATA_DB_URL"],
        ),
        (
            {"REFLEXIO_POSTGRES_READ_DB_URL": f"postgresql://u:{SECRET}@r/db"},
            ["REFLEXIO_POSTGRES_READ_DB_URL", "REFLEXIO_STORAGE"],
        ),
        (
            {"REFLEXIO_DB_URL": "sqlite:///x.db", "REFLEXIO_POSTGRES_SCHEMA": "org_1"},
            ["REFLEXIO_POSTGRES_SCHEMA", "REFLEXIO_DB_URL"],
        ),
    ],
)
def test_contradictions_name_both_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: list[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as info:
        resolve_storage()
    message = str(info.value)
    for variable in named:
        assert variable in message
    assert SECRET not in message


def test_code_configs_refuse_the_other_databases_url() -> None:
    with pytest.raises(ConfigurationError, match="SQLite URL"):
        resolve_storage(StorageConfigPostgres(db_url="sqlite:///x.db"))
    with pytest.raises(ConfigurationError, match="PostgreSQL URL"):
        resolve_storage(StorageConfigSQLite(db_url=f"postgresql://u:{SECRET}@h/db"))


@pytest.mark.parametrize("port", ["abc", "5432x", "70000", "0"])
def test_bad_port_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, port: str) -> None:
    monkeypatch.setenv("REFLEXIO_DB_URL", f"postgresql://u:{SECRET}@h:{port}/db")
    with pytest.raises(ConfigurationError, match="port") as info:
        resolve_storage()
    assert "REFLEXIO_DB_URL" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize("query", ["port=abc", "port=5432,x", "port=70000", "port=1&port=0"])
def test_bad_query_port_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """libpq's `?port=` (one per host) is checked up front: SQLAlchemy would raise a bare
    ArgumentError at the first connection."""
    monkeypatch.setenv("REFLEXIO_DB_URL", f"postgresql://u:{SECRET}@h1,h2/db?{query}")
    with pytest.raises(ConfigurationError, match=r"\?port=.*a port is a number") as info:
        resolve_storage()
    assert SECRET not in str(info.value)


def test_query_ports_one_per_host_are_accepted() -> None:
    url = parse_database_url("postgresql://u@/db?host=h1,h2&port=5432,5433").url
    assert url.query["port"] == "5432,5433"


# -- configuration fuzzing findings ------------------------------------------------------------


def test_an_unencoded_at_sign_in_the_password_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """postgresql://u:pw@S3cr3t@host/db: the URL parser would read "S3cr3t@host" as the host and
    show it in every message, repr and log line."""
    monkeypatch.setenv("REFLEXIO_DB_URL", f"postgresql://u:pw@{SECRET}@127.0.0.1:1/db")
    with pytest.raises(ConfigurationError, match="Percent-encode '@'") as info:
        resolve_storage()
    assert SECRET not in str(info.value)


def test_a_short_password_is_masked_only_where_it_stands_alone() -> None:
    from sqlalchemy.engine import make_url

    from reflexio_store.db_errors import server_reason

    url = make_url("postgresql+psycopg://u:e@h/db")
    assert server_reason(OSError("Connection refused"), url) == "Connection refused"
    assert server_reason(OSError("bad password e here"), url) == "bad password *** here"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "inf"),
        ("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "1e10"),
        ("REFLEXIO_POSTGRES_READ_POOL_ACQUIRE_TIMEOUT", "1e309"),
        ("REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS", "2147483648"),
        ("REFLEXIO_POSTGRES_READ_MAX_LAG_MS", "2147483648"),
    ],
)
def test_settings_beyond_what_the_pool_or_server_takes_are_refused(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"{name}: Input should be"):
        load_settings()


@pytest.mark.parametrize(
    "query", ["port=1,2,3", "host=a,b,c&port=1,2", "host=127.0.0.1:abc&host=127.0.0.1:5432"]
)
def test_hosts_and_ports_that_do_not_pair_up_are_a_configuration_error(query: str) -> None:
    with pytest.raises(ConfigurationError, match="one port per host"):
        parse_database_url(f"postgresql://u:{SECRET}@/db?{query}")


def test_query_hosts_with_their_ports_are_accepted() -> None:
    url = parse_database_url("postgresql://u@/db?host=h1:5432&host=h2:5433").url
    assert url.query["host"] == ("h1:5432", "h2:5433")


@pytest.mark.parametrize(
    ("directory", "reason"),
    [
        ("/etc/passwd", "/etc/passwd is a file, not a folder"),
        ("/dev/null/x", "Not a directory"),
        ("~nosuchuser9/x", "~"),
    ],
)
def test_an_unusable_sqlite_folder_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, directory: str, reason: str
) -> None:
    from reflexio_store.store import Store

    monkeypatch.setenv("SQLITE_FILE_DIRECTORY", directory)
    with pytest.raises(ConfigurationError, match=reason):
        Store().get_profile("x")


def test_bare_field_names_in_the_environment_are_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only the documented names count: DB_URL or POOL_SIZE, set by other software, must not
    redirect the store or resize its pools."""
    monkeypatch.setenv("DB_URL", f"sqlite:///{tmp_path / 'hijack.db'}")
    monkeypatch.setenv("POOL_SIZE", "7")
    monkeypatch.setenv("EMBEDDING_DIMENSIONS", "3")
    settings = load_settings()
    assert (settings.db_url, settings.pool_size, settings.embedding_dimensions) == (None, 10, 512)
    monkeypatch.setenv("reflexio_postgres_pool_size", "6")  # the documented name, any case
    assert load_settings().pool_size == 6


def test_an_empty_revision_is_a_configuration_error(tmp_path: Path) -> None:
    from reflexio_store.migrations import upgrade

    storage = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'r.db'}"))
    with pytest.raises(ConfigurationError, match="No revision given"):
        upgrade(storage, "")


@pytest.mark.parametrize(
    ("model", "values", "problem"),
    [
        (StorageConfigPostgres, {"db_url": 5}, "db_url: Input should be a valid string"),
        (
            StorageConfigPostgres,
            {"db_url": f"postgresql://u:{SECRET}@h/d", "pool_size": 0},
            "pool_size: Input should be greater than or equal to 1",
        ),
        (StorageConfigPostgres, {}, "db_url: Field required"),
        (StorageConfigSQLite, {"db_url": "sqlite://", "bogus": SECRET}, "bogus: Extra inputs"),
        (StorageConfigSupabase, {"url": "u", "db_url": "d", "key": 3}, "key: Input should be"),
    ],
)
def test_bad_configs_as_mappings_are_configuration_errors_without_their_values(
    model: type, values: dict[str, object], problem: str
) -> None:
    """A config given as a mapping gets our error type, like every other input; the values (a
    URL, a key) are never shown, nor kept on the exception's context."""
    kind = {StorageConfigPostgres: "postgres", StorageConfigSQLite: "sqlite"}.get(model, "supabase")
    with pytest.raises(ConfigurationError, match=problem) as caught:
        resolve_storage({"type": kind, **values})
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_a_config_built_directly_or_nested_never_shows_its_values() -> None:
    """Built directly, a bad config raises pydantic's ValidationError (a ValueError) naming the
    field; nested in the caller's own pydantic model (as Reflexio nests it), the same, and the
    password in the input is never printed."""
    from pydantic import BaseModel
    from pydantic import ValidationError as PydanticError

    from reflexio_store.settings import StorageConfig

    bad = {"db_url": f"postgresql://app:{SECRET}@db/x", "pool_size": 0}
    with pytest.raises(PydanticError, match="pool_size") as direct:
        StorageConfigPostgres(**bad)  # type: ignore[arg-type]
    assert isinstance(direct.value, ValueError) and SECRET not in str(direct.value)

    class AppConfig(BaseModel):
        storage: StorageConfigPostgres
        either: StorageConfig | None = None

    for given in ({"storage": bad}, {"storage": {**bad, "pool_size": 1}, "either": bad}):
        with pytest.raises(PydanticError) as nested:
            AppConfig(**given)  # type: ignore[arg-type]
        assert SECRET not in str(nested.value), str(nested.value)


def test_bad_environment_settings_keep_no_input_on_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_SIZE", f"many-{SECRET}")
    with pytest.raises(ConfigurationError, match="REFLEXIO_POSTGRES_POOL_SIZE: Input") as caught:
        load_settings()
    assert SECRET not in str(caught.value) and caught.value.__context__ is None


def test_a_mapping_with_its_type_is_read_as_a_storage_config(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    storage = resolve_storage({"type": "sqlite", "db_url": url})
    assert storage.writer_url.sqlite_path == tmp_path / "m.db"
    assert SessionFactory.from_config({"type": "sqlite", "db_url": url}).storage == storage
    postgres = resolve_storage({"type": "postgres", "db_url": f"postgresql://u:{SECRET}@h/d"})
    assert postgres.writer_url.url.host == "h"


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"db_url": "sqlite://"}, "needs its 'type'"),
        ({"type": "mysql", "db_url": "x"}, "needs its 'type'.*got 'mysql'"),
        ({"type": f"postgresql://u:{SECRET}@h/d"}, "a str that is not one of them"),
        ({"type": "sqlite", 1: "x"}, "keys are field names"),
        ({"type": "postgres", "db_url": "x", "pool_size": -1}, "pool_size"),
        (5, "got int"),
        ("sqlite:///x.db", "got str"),
    ],
)
def test_anything_else_as_a_storage_config_is_a_configuration_error(
    config: object, problem: str
) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        resolve_storage(config)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=problem):
        SessionFactory.from_config(config)  # type: ignore[arg-type]


def test_url_aliases_in_another_case_still_conflict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pydantic-settings reads data_db_url as DATA_DB_URL; two different URLs under any names
    of the setting are a contradiction, never a silent pick."""
    monkeypatch.setenv("data_db_url", f"sqlite:///{tmp_path / 'a.db'}")
    monkeypatch.setenv("REFLEXIO_DB_URL", f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(
        ConfigurationError, match=r"data_db_url and REFLEXIO_DB_URL|REFLEXIO_DB_URL and data_db_url"
    ):
        resolve_storage()
    monkeypatch.setenv("data_db_url", f"sqlite:///{tmp_path / 'b.db'}")
    assert resolve_storage().writer_url.sqlite_path == tmp_path / "b.db"


@pytest.mark.parametrize(
    ("raw", "hosts", "query"),
    [
        ("postgresql://u:pw@h1:5432,h2:5433/db", ("h1:5432", "h2:5433"), {}),
        ("postgres://u@h1:5432,h2/db?sslmode=require", ("h1:5432", "h2"), {"sslmode": "require"}),
        ("postgresql://h1:5432,h2:5433", ("h1:5432", "h2:5433"), {}),
    ],
)
def test_libpq_multi_host_urls_are_read_as_their_hosts(
    raw: str, hosts: tuple[str, ...], query: dict[str, str]
) -> None:
    url = parse_database_url(raw).url
    assert url.query["host"] == hosts
    assert {k: v for k, v in url.query.items() if k != "host"} == query
    assert url.host is None


@pytest.mark.parametrize(
    "hosts",
    ["h1:5432,h2:abc", "h1:5432,[::1]", "h1:5432 ,h2", "h1:99999,h2", "127.0.0.1:1,", "h1:1,,h2"],
)
def test_a_host_list_with_a_bad_entry_is_a_configuration_error(hosts: str) -> None:
    with pytest.raises(ConfigurationError, match="is not a host name") as caught:
        parse_database_url(f"postgresql://u:{SECRET}@{hosts}/db")
    assert SECRET not in str(caught.value)


def test_a_host_list_and_query_hosts_together_are_refused() -> None:
    for query in ("host=h3", "sslmode=require&port=5"):
        with pytest.raises(ConfigurationError, match="Give the hosts one way"):
            parse_database_url(f"postgresql://u@h1:5432,h2:5433/db?{query}")


@pytest.mark.parametrize("tail", [",cr/et9", ",cret?x9", ",e#c", "12,ab/cd"])
def test_a_password_with_a_comma_is_never_read_as_hosts(tail: str) -> None:
    """A password may hold ',', '/', '?' and '#' (it runs to the '@'): it is not a host list."""
    password = f"{SECRET}{tail}"
    url = parse_database_url(f"postgresql://app:{password}@db.example.com/prod")
    assert url.url.host == "db.example.com" and url.url.password == password
    assert password not in url.masked()
    config = StorageConfigPostgres(db_url=f"postgresql://app:{password}@db.example.com/prod")
    assert password not in repr(config)
    assert password not in str(resolve_storage(config).describe())


def test_host_lists_are_only_read_in_postgresql_urls() -> None:
    with pytest.raises(ConfigurationError, match="SQLite URLs take a path"):
        parse_database_url("sqlite://h1,h2/a.db")


def test_a_multi_host_config_has_a_masked_repr() -> None:
    config = StorageConfigPostgres(db_url=f"postgresql://u:{SECRET}@h1:5432,h2:5433/db")
    assert "h1" in repr(config) and SECRET not in repr(config)


def test_empty_url_variables_are_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """VAR= (as a shell or compose file writes it) is unset: it neither conflicts nor wins."""
    url = f"postgresql://u:{SECRET}@h/d"
    monkeypatch.setenv("REFLEXIO_DB_URL", url)
    monkeypatch.setenv("data_db_url", "")
    assert resolve_storage().backend == "postgresql"
    monkeypatch.setenv("REFLEXIO_DB_URL", "")
    monkeypatch.setenv("DATA_DB_URL", url)
    assert resolve_storage().backend == "postgresql"
    monkeypatch.setenv("REFLEXIO_DB_URL", url.replace("postgresql://", "postgres://"))
    assert resolve_storage().backend == "postgresql"  # the same URL in another spelling


def test_a_host_list_without_ports_goes_to_libpq_as_it_is() -> None:
    """libpq splits "h1,h2" itself (each host on the default port)."""
    url = parse_database_url("postgresql://u@h1,h2/db?sslmode=require").url
    assert url.host == "h1,h2" and url.query == {"sslmode": "require"}


def test_a_multi_host_url_connects_to_the_first_host_that_answers() -> None:
    """libpq tries the hosts in order: a refused first host falls through to the second (the
    machine's PostgreSQL on 127.0.0.1:5432; an extra check that skips where it is absent)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    url = parse_database_url("postgresql://postgres@127.0.0.1:1,127.0.0.1:5432/postgres").url
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            port = conn.execute(text("SELECT inet_server_port()")).scalar()
    except Exception as exc:
        pytest.skip(f"no PostgreSQL at 127.0.0.1:5432 ({type(exc).__name__})")
    finally:
        engine.dispose()
    assert port == 5432


def test_an_sqlite_file_that_cannot_be_opened_says_what_to_check(tmp_path: Path) -> None:
    from reflexio_store import DatabaseUnavailableError
    from reflexio_store.store import Store

    store = Store.from_config(StorageConfigSQLite(db_url="sqlite:////proc/no-such.db"))
    with pytest.raises(DatabaseUnavailableError, match="folder exists and is writable") as caught:
        store.count_profiles()
    assert "server is running" not in str(caught.value)


def test_word_values_in_any_case_and_timeouts_must_be_finite(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REFLEXIO_STORAGE=SQLite was refused (names matched in any case, values not), and a NaN
    timeout was refused as 'should be less than or equal to 86400'."""
    monkeypatch.setenv("REFLEXIO_STORAGE", "SQLite")
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOLER", " PgBouncer ")
    assert resolve_storage().kind == "sqlite"
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "nan")
    with pytest.raises(ConfigurationError, match="ACQUIRE_TIMEOUT: Input should be a finite"):
        resolve_storage()
