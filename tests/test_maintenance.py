"""`cluster_by_user` / `reflexio-store cluster` on a real PostgreSQL primary + replica: a user's
rows end up on few heap pages, nothing is lost or changed in meaning, a table in use is left
alone (lock timeout), and the command asks before locking anything."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory, maintenance
from reflexio_store.cli import main
from reflexio_store.errors import ConfigurationError, DatabaseBusyError, ValidationError
from reflexio_store.maintenance import cluster_by_user
from reflexio_store.settings import (
    ResolvedStorage,
    StorageConfigSQLite,
    StorageSettings,
    resolve_storage,
)
from reflexio_store.store import Store
from tests.conftest import PgEndpoints, make_pg_config

pytestmark = pytest.mark.postgres

USERS = ["u0", "u1", "u2", "u3"]
PER_USER = 120


@pytest.fixture
def storage(pg: PgEndpoints, pg_schema: str) -> ResolvedStorage:
    return resolve_storage(make_pg_config(pg, pg_schema), StorageSettings())


def _fill(store: Store) -> None:
    """Profiles of four users written interleaved, as they arrive in production."""
    rng = np.random.default_rng(7)
    dims = StorageSettings().embedding_dimensions
    rows = [
        {
            "user_id": USERS[i % len(USERS)],
            "status": "current",
            "content": f"profile {i} likes {'tea' if i % 3 else 'coffee'} and hiking",
            "embedding": rng.standard_normal(dims).astype(np.float32),
        }
        for i in range(PER_USER * len(USERS))
    ]
    store.add_profiles(rows)


def _pages_of(pg: PgEndpoints, schema: str, user: str) -> int:
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    with engine.connect() as conn:
        pages = conn.execute(
            text(
                f'SELECT count(DISTINCT (ctid::text::point)[0]) FROM "{schema}".profiles '
                "WHERE user_id = :user"
            ),
            {"user": user},
        ).scalar_one()
    engine.dispose()
    return int(pages)


def _relfilenode(pg: PgEndpoints, schema: str, table: str) -> int:
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    with engine.connect() as conn:
        node = conn.execute(
            text("SELECT relfilenode FROM pg_class WHERE oid = CAST(:t AS regclass)"),
            {"t": f'"{schema}".{table}'},
        ).scalar_one()
    engine.dispose()
    return int(node)


def _searches(store: Store, probe: np.ndarray) -> list[list[tuple[str, float]]]:
    return [
        [
            (hit.item.profile_id, round(hit.score, 6))
            for hit in store.search_profiles(
                "coffee", embedding=probe, user_id=user, consistency="strong", top_k=20
            )
        ]
        for user in USERS
    ]


def test_a_users_rows_end_up_on_few_pages_and_nothing_changes_in_meaning(
    pg: PgEndpoints, pg_schema: str, pg_factory: SessionFactory, storage: ResolvedStorage
) -> None:
    store = Store(pg_factory)
    _fill(store)
    probe = np.random.default_rng(11).standard_normal(StorageSettings().embedding_dimensions)
    before_hits = _searches(store, probe)
    assert all(len(hits) == 20 for hits in before_hits)
    before_pages = _pages_of(pg, pg_schema, "u1")
    assert before_pages > PER_USER // 2  # interleaved: about one page per row

    done = cluster_by_user(storage, ["profiles"])

    assert [(t.table, t.rows) for t in done] == [("profiles", PER_USER * len(USERS))]
    after_pages = _pages_of(pg, pg_schema, "u1")
    assert after_pages * 2 < before_pages, (before_pages, after_pages)
    assert store.count_profiles() == PER_USER * len(USERS)
    assert _searches(store, probe) == before_hits
    pg.wait_for_replica()  # the rewritten table reaches the replica and serves searches there
    assert len(store.search_profiles("coffee", embedding=probe, user_id="u1")) == 10


@pytest.fixture
def busy_profiles(pg: PgEndpoints, pg_schema: str) -> Iterator[None]:
    """Another session in the middle of a transaction that has read the profiles table."""
    conn = psycopg.connect(pg.primary_url.replace("postgresql+psycopg://", "postgresql://"))
    conn.execute(f'SELECT count(*) FROM "{pg_schema}".profiles')
    yield
    conn.rollback()
    conn.close()


def test_a_table_in_use_is_left_alone(
    pg: PgEndpoints, pg_schema: str, storage: ResolvedStorage, busy_profiles: None
) -> None:
    node = _relfilenode(pg, pg_schema, "profiles")
    with pytest.raises(
        DatabaseBusyError,
        match=r"(?s)Could not lock .*profiles within 0.2 s.*"
        r"user_playbooks already clustered",
    ):
        cluster_by_user(storage, ["user_playbooks", "profiles"], lock_timeout=0.2)
    assert _relfilenode(pg, pg_schema, "profiles") == node


def test_the_command_asks_before_locking_tables(
    pg: PgEndpoints,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import io
    import sys

    node = _relfilenode(pg, pg_schema, "profiles")
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # not a terminal
    argv = ["cluster", "--url", pg.primary_url, "--schema", pg_schema, "--table", "profiles"]
    assert main(argv) == 2
    assert "Re-run with --yes" in capsys.readouterr().err
    assert _relfilenode(pg, pg_schema, "profiles") == node

    assert main([*argv, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "Clustered by user" in out and "profiles" in out
    assert _relfilenode(pg, pg_schema, "profiles") != node


def test_bad_arguments_and_sqlite_get_clear_errors(
    storage: ResolvedStorage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValidationError, match="Unknown table 'sessions' to cluster"):
        cluster_by_user(storage, ["sessions"])
    with pytest.raises(ValidationError, match="lock_timeout must be a finite number"):
        cluster_by_user(storage, lock_timeout=0)
    sqlite = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'r.db'}"))
    with pytest.raises(ConfigurationError, match="PostgreSQL operation"):
        cluster_by_user(sqlite)
    assert main(["cluster", "--url", f"sqlite:///{tmp_path / 'r.db'}", "--yes"]) == 2
    assert "PostgreSQL operation" in capsys.readouterr().err


def test_only_the_given_organization_is_rewritten(
    pg: PgEndpoints, pg_schema: str, other_pg_schema: str, storage: ResolvedStorage
) -> None:
    theirs = _relfilenode(pg, other_pg_schema, "profiles")
    ours = _relfilenode(pg, pg_schema, "profiles")
    cluster_by_user(storage, ["profiles"])
    assert _relfilenode(pg, pg_schema, "profiles") != ours
    assert _relfilenode(pg, other_pg_schema, "profiles") == theirs


def test_a_server_that_is_not_running_is_reported_without_secrets(
    pg: PgEndpoints, tmp_path: Path
) -> None:
    from reflexio_store.errors import DatabaseUnavailableError
    from tests.test_outages import assert_clean, dead_url

    url = dead_url(pg, tmp_path).replace("postgres@", "postgres:Sekrit-9@", 1)
    down = resolve_storage(
        make_pg_config(pg, "org_down").model_copy(update={"db_url": url}), StorageSettings()
    )
    with pytest.raises(DatabaseUnavailableError, match="Could not") as info:
        cluster_by_user(down, ["profiles"])
    assert_clean(info.value, "Sekrit-9")
    # The nightly form fails the same way at its first step (ANALYZE), not with a raw error.
    with pytest.raises(DatabaseUnavailableError, match="Could not analyze tables") as info:
        cluster_by_user(down, ["profiles"], only_below=0.9)
    assert_clean(info.value, "Sekrit-9")


def test_only_below_rewrites_only_the_tables_that_lost_their_user_order(
    pg: PgEndpoints,
    pg_schema: str,
    pg_factory: SessionFactory,
    storage: ResolvedStorage,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A nightly `cluster --only-below 0.9` rewrites a table written in arrival order, leaves an
    empty one and an already ordered one alone, and reports the order it found."""
    _fill(Store(pg_factory))
    empty = _relfilenode(pg, pg_schema, "user_playbooks")

    done = {
        t.table: t for t in cluster_by_user(storage, ["profiles", "user_playbooks"], only_below=0.9)
    }

    assert done["profiles"].clustered
    assert done["profiles"].user_order is not None and done["profiles"].user_order < 0.5
    assert not done["user_playbooks"].clustered and done["user_playbooks"].user_order is None
    assert _relfilenode(pg, pg_schema, "user_playbooks") == empty
    ordered = _relfilenode(pg, pg_schema, "profiles")

    again = cluster_by_user(storage, ["profiles"], only_below=0.9)
    assert not again[0].clustered
    assert again[0].user_order is not None and again[0].user_order > 0.99
    assert again[0].rows == PER_USER * len(USERS)
    assert _relfilenode(pg, pg_schema, "profiles") == ordered

    argv = ["cluster", "--url", pg.primary_url, "--schema", pg_schema, "--table", "profiles"]
    assert main([*argv, "--only-below", "0.9", "--yes"]) == 0
    assert "left as it was" in capsys.readouterr().out
    assert _relfilenode(pg, pg_schema, "profiles") == ordered
    with pytest.raises(ValidationError, match="only_below"):
        cluster_by_user(storage, only_below=1.5)


def _on_profiles(pg: PgEndpoints, schema: str, sql: str) -> None:
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text(sql.format(table=f'"{schema}".profiles')))
    engine.dispose()


def test_check_advises_clustering_only_while_users_rows_are_scattered(
    pg: PgEndpoints,
    pg_schema: str,
    pg_factory: SessionFactory,
    storage: ResolvedStorage,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`check` reads the planner's statistics (no ANALYZE of its own): scattered users of at
    least ADVISE_FROM_ROWS rows get advice naming the command, which does not change the exit
    code; after clustering the advice is gone."""
    monkeypatch.setattr(maintenance, "ADVISE_FROM_ROWS", PER_USER // 2)
    monkeypatch.setenv("COLUMNS", "200")
    argv = ["check", "--url", pg.primary_url, "--schema", pg_schema]
    # Statistics only when this test says so (autovacuum would analyze the table at its pace).
    _on_profiles(pg, pg_schema, "ALTER TABLE {table} SET (autovacuum_enabled = false)")
    _fill(Store(pg_factory))
    assert main(argv) == 0
    assert "Advice" not in capsys.readouterr().out  # no statistics yet: nothing is guessed

    _on_profiles(pg, pg_schema, "ANALYZE {table}")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"largest user ~{PER_USER}" in out
    assert "Advice:" in out and "profiles: rows are in arrival order" in out
    command = f"reflexio-store cluster --schema {pg_schema} --table profiles --only-below 0.5"
    assert command in out
    monkeypatch.setattr(maintenance, "ADVISE_FROM_ROWS", PER_USER * 2)  # users too small to matter
    assert main(argv) == 0
    assert "Advice" not in capsys.readouterr().out
    monkeypatch.setattr(maintenance, "ADVISE_FROM_ROWS", PER_USER // 2)

    cluster_by_user(storage, ["profiles"])  # analyzes the rewritten table too
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "profiles 1.00" in out and "Advice" not in out
