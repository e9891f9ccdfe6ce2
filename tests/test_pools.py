"""Bounded pools: organizations share one pool per database and role, AsyncStore stays within
the pool sizes, SQLite keeps a bounded number of files open, and no engine shows a password."""

from __future__ import annotations

import asyncio
import io
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from alembic import command
from reflexio_store import SessionFactory, StorageConfigPostgres, StorageConfigSQLite
from reflexio_store.engine_registry import registry
from reflexio_store.engines import postgres_connect_args
from reflexio_store.errors import ConfigurationError, PoolTimeoutError
from reflexio_store.migrations import alembic_config, migration_engine, upgrade
from reflexio_store.settings import StorageSettings, load_settings, resolve_storage
from reflexio_store.store import AsyncStore, Store
from tests.conftest import PgEndpoints, make_pg_config


def _psycopg_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


class ConnectionSampler:
    """Samples pg_stat_activity of one server from its own connection while a load runs, and
    keeps the peak number of reflexio_store connections per application_name opened since the
    sampler started (older pools of other tests do not count)."""

    def __init__(self, url: str) -> None:
        self._conn = psycopg.connect(_psycopg_url(url), autocommit=True)
        self.since: datetime = self._conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
        self.peaks: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def current(self) -> dict[str, int]:
        rows = self._conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'reflexio_store.%%' AND backend_start >= %s "
            "GROUP BY application_name",
            (self.since,),
        ).fetchall()
        return {name: int(count) for name, count in rows}

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, count in self.current().items():
                self.peaks[name] = max(self.peaks.get(name, 0), count)
            self.samples += 1
            # A pause between samples, not a synchronisation: it leaves the load the CPU.
            self._stop.wait(0.002)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._conn.close()


TEMPLATE_SCHEMA = "rxs_template_schema"


@contextmanager
def migrated_schemas(pg: PgEndpoints, count: int) -> Iterator[list[str]]:
    """`count` organization schemas at head, dropped afterwards. The first is migrated online;
    the others replay the same migrations' offline SQL (one round trip each instead of a full
    Alembic run, which would take most of the suite's time budget for 100 schemas)."""
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    upgrade(resolve_storage(make_pg_config(pg, schemas[0]), StorageSettings()))
    script = io.StringIO()
    template = resolve_storage(make_pg_config(pg, TEMPLATE_SCHEMA), StorageSettings())
    config = alembic_config(template, stdout=io.StringIO())
    config.output_buffer = script
    command.upgrade(config, "head", sql=True)
    try:
        with psycopg.connect(_psycopg_url(pg.primary_url), autocommit=True) as conn:
            for schema in schemas[1:]:
                conn.execute(script.getvalue().replace(TEMPLATE_SCHEMA, schema).encode())
        pg.wait_for_replica()
        yield schemas
    finally:
        with psycopg.connect(_psycopg_url(pg.primary_url), autocommit=True) as conn:
            for schema in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a real condition until it holds (a closed backend leaves pg_stat_activity soon after
    the client closes, not at once)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.01)


def _factories(configs: list[Any]) -> list[SessionFactory]:
    return [SessionFactory.from_config(c, settings=StorageSettings()) for c in configs]


def _dispose(factories: list[SessionFactory]) -> None:
    for factory in factories:
        factory.dispose()


# -- many organizations, one pool per database and role ----------------------------------------


ORGANIZATIONS = 100
POOL = 5
ROUNDS = 2


def test_organizations_share_one_bounded_pool_per_role(pg: PgEndpoints) -> None:
    """100 organizations writing and searching at once on pool size 5 + read pool 5: at most 5
    connections per role on each server, sampled from pg_stat_activity during the load."""
    assert pg.replica_url is not None
    with migrated_schemas(pg, ORGANIZATIONS) as schemas:
        # An acquire timeout no other test uses: these pools are this test's own.
        configs = [
            make_pg_config(
                pg,
                schema,
                pool_size=POOL,
                read_pool_size=POOL,
                pool_acquire_timeout=59.5,
                read_pool_acquire_timeout=59.5,
            )
            for schema in schemas
        ]
        factories = _factories(configs)
        errors: list[BaseException] = []
        start = threading.Barrier(ORGANIZATIONS)

        def work(index: int, factory: SessionFactory) -> None:
            try:
                store = Store(factory)
                start.wait(timeout=60)
                for round_ in range(ROUNDS):
                    store.add_profiles(
                        [{"user_id": "u", "content": f"org {index} likes tea {round_}"}]
                    )
                    store.search_profiles("tea", mode="text", user_id="u")
                    store.search_profiles("tea", mode="text", consistency="strong")
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        try:
            with (
                ConnectionSampler(pg.primary_url) as primary,
                ConnectionSampler(pg.replica_url) as replica,
            ):
                threads = [
                    threading.Thread(target=work, args=(i, f)) for i, f in enumerate(factories)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(timeout=120)
                assert not any(t.is_alive() for t in threads), "the load did not finish"
            assert not errors, [str(e) for e in errors[:3]]
            writer_peak = primary.peaks.get("reflexio_store.writer", 0)
            reader_peak = replica.peaks.get("reflexio_store.reader", 0)
            print(
                f"\n{ORGANIZATIONS} organizations, pool {POOL}+{POOL}: peak writer connections "
                f"{writer_peak} (primary), peak reader connections {reader_peak} (replica), "
                f"{primary.samples}+{replica.samples} samples"
            )
            assert 1 <= writer_peak <= POOL
            assert 1 <= reader_peak <= POOL
            assert primary.peaks.get("reflexio_store.reader", 0) == 0
            # Every organization's rows stayed in its own schema.
            for index, factory in enumerate(factories[:5]):
                contents = {p.content for p in Store(factory).list_profiles(consistency="strong")}
                assert contents == {f"org {index} likes tea {r}" for r in range(ROUNDS)}
        finally:
            _dispose(factories)


def test_idle_organization_costs_no_connection_and_last_dispose_closes(
    pg: PgEndpoints, pg_schema: str
) -> None:
    config = make_pg_config(pg, pg_schema, pool_size=2, pool_acquire_timeout=58.5)
    busy, idle = _factories([config, config])
    with ConnectionSampler(pg.primary_url) as sampler:
        with busy.writer() as session:
            session.execute(text("SELECT 1"))
        assert sampler.current() == {"reflexio_store.writer": 1}
        assert busy.writer_engine.pool is idle.writer_engine.pool
        busy.dispose()  # idle still holds a lease: the shared pool keeps its connection
        assert sampler.current() == {"reflexio_store.writer": 1}
        idle.dispose()
        wait_until(lambda: sampler.current() == {})


def test_different_pool_settings_get_their_own_pools(
    pg: PgEndpoints, pg_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    small, large = _factories(
        [
            make_pg_config(pg, pg_schema, pool_size=2, pool_acquire_timeout=57.5),
            make_pg_config(pg, pg_schema, pool_size=3, pool_acquire_timeout=57.5),
        ]
    )
    try:
        assert small.writer_engine.pool is not large.writer_engine.pool
        assert "each distinct setting gets its own pool (sizes 2, 3)" in caplog.text
    finally:
        _dispose([small, large])


# -- pool timeouts name the settings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "names"),
    [
        ("writer", ("REFLEXIO_POSTGRES_POOL_SIZE", "StorageConfigPostgres.pool_size")),
        ("reader", ("REFLEXIO_POSTGRES_READ_POOL_SIZE", "StorageConfigPostgres.read_pool_size")),
    ],
)
def test_pool_timeout_names_environment_variable_and_config_field(
    pg: PgEndpoints, pg_schema: str, role: str, names: tuple[str, str]
) -> None:
    config = make_pg_config(
        pg,
        pg_schema,
        pool_size=1,
        read_pool_size=1,
        pool_acquire_timeout=0.2,
        read_pool_acquire_timeout=0.2,
    )
    (factory,) = _factories([config])
    engine = factory.writer_engine if role == "writer" else factory.reader_engine
    try:
        with engine.connect(), pytest.raises(PoolTimeoutError) as caught:
            engine.connect()
        message = str(caught.value)
        for name in names:
            assert name in message
        assert ("ACQUIRE_TIMEOUT" in message) and ("acquire_timeout" in message)
        assert f"All 1 {role} connections" in message
    finally:
        factory.dispose()


# -- AsyncStore alone stays within the pool sizes -------------------------------------------------


def test_async_sessions_alone_hold_at_most_the_pool_size(pg: PgEndpoints, pg_schema: str) -> None:
    """The schema check runs on the async pool's connection: pool size 1 means 1 connection."""
    config = make_pg_config(pg, pg_schema, pool_size=1, read_pool_size=1, pool_acquire_timeout=56.5)
    (factory,) = _factories([config])

    async def load() -> None:
        async def one(i: int) -> None:
            async with factory.async_writer() as session:
                await session.execute(text("SELECT pg_sleep(0.01)"))
            async with factory.async_reader() as session:
                await session.execute(text("SELECT 1"))

        await asyncio.gather(*(one(i) for i in range(20)))
        await factory.adispose()

    with ConnectionSampler(pg.primary_url) as primary:
        asyncio.run(load())
    assert primary.peaks.get("reflexio_store.writer") == 1


def test_async_store_alone_holds_at_most_the_pool_sizes(pg: PgEndpoints, pg_schema: str) -> None:
    config = make_pg_config(pg, pg_schema, pool_size=1, read_pool_size=1, pool_acquire_timeout=55.5)
    (factory,) = _factories([config])
    store = AsyncStore(factory)

    async def load() -> None:
        await asyncio.gather(
            *(store.add_profiles([{"user_id": "u", "content": f"espresso {i}"}]) for i in range(10))
        )
        await asyncio.gather(
            *(store.search_profiles("espresso", mode="text") for _ in range(10)),
            *(store.list_profiles(consistency="strong") for _ in range(10)),
        )

    assert pg.replica_url is not None
    try:
        with (
            ConnectionSampler(pg.primary_url) as primary,
            ConnectionSampler(pg.replica_url) as replica,
        ):
            asyncio.run(load())
        assert primary.peaks.get("reflexio_store.writer") == 1
        assert primary.peaks.get("reflexio_store.reader", 0) == 0
        assert replica.peaks.get("reflexio_store.reader") == 1
    finally:
        factory.dispose()


# -- SQLite: a bounded number of open database files ---------------------------------------------


def _open_db_files(directory: Path) -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)) and target.endswith(".db"):
            found.add(target)
    return found


def test_sqlite_keeps_a_bounded_number_of_files_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLEXIO_SQLITE_MAX_OPEN_DATABASES", "3")
    configs = [StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / f'org{i}.db'}") for i in range(8)]
    factories = _factories(configs)
    try:
        peak = 0
        for round_ in range(2):
            for i, factory in enumerate(factories):
                Store(factory).add_profiles([{"user_id": "u", "content": f"{i}-{round_}"}])
                open_files = _open_db_files(tmp_path)
                assert str(tmp_path / f"org{i}.db") in open_files
                peak = max(peak, len(open_files))
        assert 2 <= peak <= 3
        assert registry.open_sqlite_count() <= 3
        # A closed database reopens on use, with its rows.
        rows = Store(factories[0]).list_profiles(consistency="strong")
        assert {p.content for p in rows} == {"0-0", "0-1"}
    finally:
        _dispose(factories)
    assert _open_db_files(tmp_path) == set()


# -- no secret in any repr or str of factories, engines, URLs or pools ----------------------------


SECRET = "s3cr3t-Pa55"


def _secret_urls(url: str) -> list[str]:
    user_part = url.replace("postgresql+psycopg://postgres@", f"postgresql://postgres:{SECRET}@")
    query_form = url + f"&password={SECRET}"
    return [user_part, query_form]


@pytest.mark.parametrize("form", ["user_part", "query"])
def test_no_password_in_engine_reprs(pg: PgEndpoints, pg_schema: str, form: str) -> None:
    """The test servers trust local connections, so the password is sent and ignored: what
    matters here is where it is kept."""
    url = _secret_urls(pg.primary_url)[0 if form == "user_part" else 1]
    read_url = _secret_urls(pg.replica_url or pg.primary_url)[0 if form == "user_part" else 1]
    config = StorageConfigPostgres(db_url=url, read_db_url=read_url, schema=pg_schema)
    (factory,) = _factories([config])
    try:
        with factory.writer() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
        with factory.reader() as session:
            assert session.execute(text("SELECT 1")).scalar() == 1
        shown: list[Callable[[], object]] = []
        for engine in (factory.writer_engine, factory.reader_engine):
            shown += [
                lambda e=engine: repr(e),
                lambda e=engine: str(e.url),
                lambda e=engine: repr(e.url),
                lambda e=engine: e.url.render_as_string(hide_password=False),
                lambda e=engine: repr(e.pool),
                lambda e=engine: e.pool.status(),
            ]
        async_engine = factory.async_writer_engine
        shown += [lambda: repr(async_engine), lambda: str(async_engine.url), lambda: repr(factory)]
        storage = resolve_storage(config, StorageSettings())
        migrate = migration_engine(storage)
        shown += [lambda: migrate.url.render_as_string(hide_password=False), lambda: repr(migrate)]
        for index, show in enumerate(shown):
            assert SECRET not in str(show()), index
        assert factory.writer_engine.url.password is None
        migrate.dispose()
    finally:
        factory.dispose()


def test_registry_keys_show_no_secret(pg: PgEndpoints, pg_schema: str) -> None:
    url = _secret_urls(pg.primary_url)[0]
    (factory,) = _factories([StorageConfigPostgres(db_url=url, schema=pg_schema)])
    try:
        factory.writer_engine  # noqa: B018 - leases the shared engine
        assert registry.engines()
        assert SECRET not in repr(registry.engines())
    finally:
        factory.dispose()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("REFLEXIO_POSTGRES_POOLER", "pgpool", "should be 'none' or 'pgbouncer'"),
        ("REFLEXIO_SQLITE_MAX_OPEN_DATABASES", "0", "greater than or equal to 1"),
    ],
)
def test_pool_settings_are_validated(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=f"{name}: .*{message}"):
        load_settings()


def test_pooler_turns_off_server_side_prepared_statements() -> None:
    url = make_url("postgresql+psycopg://app:pw@db/reflexio?sslpassword=key")
    _, direct = postgres_connect_args(url, application_name="x", pooler=None)
    target, pooled = postgres_connect_args(url, application_name="x", pooler="pgbouncer")
    assert "prepare_threshold" not in direct
    assert pooled["prepare_threshold"] is None
    assert pooled["password"] == "pw" and pooled["sslpassword"] == "key"
    assert target.render_as_string(hide_password=False) == "postgresql+psycopg://app@db/reflexio"
