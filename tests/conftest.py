"""Test fixtures: real SQLite files, and a real PostgreSQL + pgvector primary with a streaming
replica started for the session (or external servers named by REFLEXIO_TEST_POSTGRES_URL and
REFLEXIO_TEST_POSTGRES_READ_URL). A PostgreSQL that cannot start fails the run; it never skips.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from reflexio_store import SessionFactory, StorageConfigPostgres, StorageConfigSQLite
from reflexio_store.migrations import upgrade
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store
from tests.support.auth import PasswordRole

ENV_PREFIXES = (
    "REFLEXIO_",
    "DATA_DB_URL",
    "SQLITE_FILE_DIRECTORY",
    "INTERACTION_CLEANUP",
    "DEPLOYMENT_MODE",
    "SELF_HOST_",
)


@dataclass(frozen=True)
class PgEndpoints:
    primary_url: str
    replica_url: str | None

    def wait_for_replica(self, timeout: float = 15.0) -> None:
        """Block until the replica has replayed everything written on the primary so far."""
        from tests.support.pg_cluster import wait_for_replay

        wait_for_replay(self.primary_url, self.replica_url, timeout)


def _null_pool() -> type:
    from sqlalchemy.pool import NullPool

    return NullPool


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's REFLEXIO_* settings by accident."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def pg() -> Iterator[PgEndpoints]:
    external = os.environ.get("REFLEXIO_TEST_POSTGRES_URL")
    if external:
        yield PgEndpoints(external, os.environ.get("REFLEXIO_TEST_POSTGRES_READ_URL"))
        return
    from tests.support.pg_cluster import start_cluster

    # A SIGTERM (CI time-out, a killed run) becomes an interrupt, so pytest still runs this
    # fixture's teardown and the servers stop instead of outliving the run.
    signal.signal(signal.SIGTERM, _interrupt)
    base = Path(tempfile.mkdtemp(prefix="rxs-pg-", dir="/tmp"))
    cluster = start_cluster(base)  # raises ClusterStartError with the reason: the run fails
    try:
        yield PgEndpoints(cluster.primary_url, cluster.replica_url)
    finally:
        cluster.stop()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _settings() -> StorageSettings:
    return StorageSettings()


def make_pg_config(pg: PgEndpoints, schema: str, **kwargs: object) -> StorageConfigPostgres:
    return StorageConfigPostgres(
        db_url=pg.primary_url, read_db_url=pg.replica_url, schema=schema, **kwargs
    )


def _migrated_schema(pg: PgEndpoints) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    upgrade(resolve_storage(make_pg_config(pg, schema), _settings()))
    pg.wait_for_replica()
    yield schema
    engine = create_engine(pg.primary_url, poolclass=_null_pool())
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


@pytest.fixture
def pg_schema(pg: PgEndpoints) -> Iterator[str]:
    """A fresh PostgreSQL schema migrated to head, dropped afterwards."""
    yield from _migrated_schema(pg)


@pytest.fixture
def other_pg_schema(pg: PgEndpoints) -> Iterator[str]:
    """A second organization's schema beside `pg_schema`, migrated, dropped afterwards."""
    yield from _migrated_schema(pg)


@pytest.fixture
def pg_factory(pg: PgEndpoints, pg_schema: str) -> Iterator[SessionFactory]:
    factory = SessionFactory.from_config(make_pg_config(pg, pg_schema), settings=_settings())
    yield factory
    factory.dispose()


@pytest.fixture
def sqlite_factory(tmp_path: Path) -> Iterator[SessionFactory]:
    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'reflexio.db'}")
    factory = SessionFactory.from_config(config, settings=_settings())
    yield factory
    factory.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def factory(request: pytest.FixtureRequest) -> SessionFactory:
    """The same test on an SQLite file and on PostgreSQL (primary + replica)."""
    name = "sqlite_factory" if request.param == "sqlite" else "pg_factory"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture
def store(factory: SessionFactory) -> Store:
    return Store(factory)


@pytest.fixture
def sync_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> Callable[[], None]:
    """Wait until the replica has what the primary committed (no-op on SQLite)."""
    if factory.backend != "postgresql":
        return lambda: None
    pg: PgEndpoints = request.getfixturevalue("pg")
    return pg.wait_for_replica


@pytest.fixture
def pg_fresh_db(pg: PgEndpoints) -> Iterator[str]:
    """A new, empty database on the primary (public untouched by other tests), dropped after."""
    name = f"rxs_orgs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(pg.primary_url, poolclass=_null_pool(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(pg.primary_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def pg_password_role(pg: PgEndpoints) -> PasswordRole:
    """A role on the primary that must give its password (scram), for refused-login tests."""
    from tests.support.auth import create_password_role

    return create_password_role(pg.primary_url)


@pytest.fixture(scope="session")
def reference_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of reflexio-ai that imports on Python 3.11 (tests/support/reflexio_reference.py)."""
    from tests.support.reflexio_reference import patched_reflexio

    return patched_reflexio(tmp_path_factory.mktemp("reflexio-ai-patched"))
