"""reflexio_store behind a real PgBouncer in transaction pooling mode (REFLEXIO_POSTGRES_POOLER=
pgbouncer): migrations, concurrent writes and searches, no prepared statements and no session
state that outlives a transaction. Skips, saying why, where the pgbouncer binary is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import text

from reflexio_store import SessionFactory, StorageConfigPostgres
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store
from tests.conftest import ENV_PREFIXES, PgEndpoints
from tests.support.pgbouncer import PgBouncer, pgbouncer_binary, start_pgbouncer

SERVER_CONNECTIONS = 2


@pytest.fixture(scope="module")
def bouncer(pg: PgEndpoints) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip(
            "pgbouncer is not installed (Debian package pgbouncer; .ci/run installs it with "
            "apt-get install -y pgbouncer)"
        )
    running = start_pgbouncer(pg.primary_url, pool_size=SERVER_CONNECTIONS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def pooled_settings(monkeypatch: pytest.MonkeyPatch) -> StorageSettings:
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOLER", "pgbouncer")
    monkeypatch.setenv("REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS", "4321")
    return StorageSettings()


@pytest.fixture
def bouncer_schema(bouncer: PgBouncer, pg: PgEndpoints) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield schema
    with psycopg.connect(pg.primary_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def test_transaction_pooling_breaks_prepared_statements(bouncer: PgBouncer) -> None:
    """The control: through this PgBouncer a statement prepared in one transaction is gone when
    the next transaction lands on another server connection, which is what the pooler setting
    avoids. (If this ever passes, PgBouncer tracks prepared statements itself.)"""
    with bouncer.connect(prepare_threshold=0) as client, bouncer.connect() as other:
        client.execute("SELECT 1")  # prepared as _pg3_0 on server connection S1
        with other.transaction():
            other.execute("SELECT 2")  # holds S1: the next transaction of `client` gets S2
            with pytest.raises(psycopg.errors.InvalidSqlStatementName):
                client.execute("SELECT 1")


def test_store_through_pgbouncer(
    bouncer: PgBouncer, bouncer_schema: str, pooled_settings: StorageSettings
) -> None:
    config = StorageConfigPostgres(db_url=bouncer.url, schema=bouncer_schema, pool_size=4)
    storage = resolve_storage(config, pooled_settings)
    assert storage.pooler == "pgbouncer"

    # Concurrent migrations of one schema through the pooler, from separate processes (Alembic
    # is not thread-safe): the transaction-scoped advisory lock serialises them.
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIXES)}
    env.update(
        REFLEXIO_STORAGE="postgres",
        REFLEXIO_DB_URL=bouncer.url,
        REFLEXIO_POSTGRES_SCHEMA=bouncer_schema,
        REFLEXIO_POSTGRES_POOLER="pgbouncer",
    )
    command = [sys.executable, "-m", "reflexio_store.cli", "migrate"]
    migrators = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(2)
    ]
    outputs = [m.communicate(timeout=120)[0].decode() for m in migrators]
    assert [m.returncode for m in migrators] == [0, 0], outputs
    errors: list[BaseException] = []

    factory = SessionFactory(storage)
    try:
        store = Store(factory)

        def work(worker: int) -> None:
            try:
                for i in range(8):  # past psycopg's automatic preparation threshold (5)
                    store.add_profiles(
                        [
                            {
                                "user_id": f"u{worker}",
                                "content": f"espresso number {i}",
                                "status": "current",
                            }
                        ]
                    )
                    hits = store.search_profiles(
                        "espresso", mode="text", user_id=f"u{worker}", threshold=0.0
                    )
                    assert len(hits) == min(i + 1, 10)
                    assert len(store.list_profiles(user_id=f"u{worker}", limit=100)) == i + 1
                    # One autocommit statement straight on the driver (one_statement.py): no
                    # prepared statement may be left to another client's server connection.
                    run = {"status": "running", "current_step_index": i}
                    store.save_state(f"run-{worker}", run)
                    state = store.load_state(f"run-{worker}")
                    assert state is not None and state["current_step_index"] == i
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join(timeout=120)
        assert not errors, [str(e) for e in errors[:3]]

        # Reader transactions are READ ONLY with SET LOCAL statement_timeout: neither outlives
        # its transaction on the shared server connections.
        for _ in range(2 * SERVER_CONNECTIONS):
            with factory.reader() as session:
                assert session.execute(text("SHOW statement_timeout")).scalar() == "4321ms"
                assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"
            with factory.writer() as session:
                assert session.execute(text("SHOW statement_timeout")).scalar() == "0"
                assert session.execute(text("SHOW transaction_read_only")).scalar() == "off"
    finally:
        factory.dispose()
