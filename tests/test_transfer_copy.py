"""`reflexio-store copy`: every table between two real databases, verified; --append re-runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from reflexio_store import ConflictError, SessionFactory, StorageConfigSQLite
from reflexio_store.cli import main
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.demo.run import execute_demo
from reflexio_store.demo.workload import WorkloadSize
from reflexio_store.models import Interaction, Profile
from reflexio_store.settings import StorageSettings
from reflexio_store.store import Store
from reflexio_store.transfer.copy import copied_tables, copy_database, table_checksum
from tests.conftest import PgEndpoints

DIMS = 512


def _fill_every_table(store: Store) -> None:
    """The demo workload (requests, interactions, profiles, playbooks, runs) plus one row or more
    in every other table."""
    execute_demo(store, "test", WorkloadSize.tiny())
    agent = store.list_agent_playbooks(status=None, limit=1)[0]
    user = store.list_user_playbooks(status=None, limit=2)
    store.add_agent_playbook_sources(agent.agent_playbook_id, [p.user_playbook_id for p in user])
    store.save_evaluation_result(
        "s1",
        "helpfulness",
        agent_version="v1",
        is_success=True,
        embedding=HashingEmbedder(DIMS).embed("helpful answer"),
    )
    store.add_profile_change_log(request_id="r1", user_id="u1", added_profiles=[{"id": "p"}])
    store.add_playbook_aggregation_change_log(playbook_name="pb", before=[1], after=[1, 2])
    job = store.create_optimization_job(playbook_name="pb", config={"k": 1})
    candidate = store.add_optimization_candidate(job.id, "try harder", score=0.5)
    store.add_optimization_evaluation(candidate.id, score=0.7, details={"n": 3})
    store.add_optimization_event(job.id, "started", payload={"at": 1})
    store.create_share_link("profile", "p1", ttl=3600)
    org = store.create_organization("ops@example.com", password="correct horse")
    store.create_api_token(org.id, name="ci")
    store.upsert_operation_state("generation", {"cursor": 42})


def _sqlite(path: Path) -> SessionFactory:
    return SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{path}"), settings=StorageSettings()
    )


@pytest.fixture
def filled_sqlite(tmp_path: Path) -> SessionFactory:
    factory = _sqlite(tmp_path / "source.db")
    _fill_every_table(Store(factory))
    return factory


def _checksums(factory: SessionFactory) -> dict[str, tuple[int, str]]:
    with factory.writer_connection(write=False) as conn:
        return {t.name: table_checksum(conn, t) for t in copied_tables()}


def test_sqlite_to_postgres_copies_every_table_verified(
    filled_sqlite: SessionFactory, pg_factory: SessionFactory
) -> None:
    seen: dict[str, int] = {}
    reports = copy_database(
        filled_sqlite, pg_factory, batch=37, progress=lambda t, done, total: seen.update({t: done})
    )
    by_table = {r.table: r for r in reports}
    assert set(by_table) == {t.name for t in copied_tables()}
    source = _checksums(filled_sqlite)
    assert _checksums(pg_factory) == source
    for name, report in by_table.items():
        assert report.verified
        assert report.source_rows == report.target_rows == report.copied == source[name][0]
    # Every table the workload filled has rows, and progress reached the end of each.
    assert all(count > 0 for count, _ in source.values()), source
    assert seen["profiles"] == source["profiles"][0]

    # Full text and vectors arrive usable: the same searches find the same rows.
    pg_store, sqlite_store = Store(pg_factory), Store(filled_sqlite)
    vector = HashingEmbedder(DIMS).embed("prefers dark mode in every editor")
    for mode in ("text", "vector"):
        want = sqlite_store.search_profiles(
            "dark mode", embedding=vector, mode=mode, consistency="strong", top_k=5
        )
        got = pg_store.search_profiles(
            "dark mode", embedding=vector, mode=mode, consistency="strong", top_k=5
        )
        assert {h.item.profile_id for h in got} == {h.item.profile_id for h in want}, mode
        assert want

    # Sequences moved past the copied ids: new rows get fresh keys.
    with pg_factory.writer() as session:
        before = session.scalar(select(func.max(Interaction.interaction_id)))
    pg_store.add_requests(
        [
            {
                "request_id": "after-copy",
                "user_id": "u-new",
                "interactions": [{"role": "user", "content": "hello after copy"}],
            }
        ]
    )
    with pg_factory.writer() as session:
        after = session.scalar(select(func.max(Interaction.interaction_id)))
    assert before is not None and after is not None and after > before


def test_non_empty_target_is_refused_unless_append_and_append_is_idempotent(
    filled_sqlite: SessionFactory, tmp_path: Path
) -> None:
    target = _sqlite(tmp_path / "target.db")
    copy_database(filled_sqlite, target)
    with target.writer() as session:
        profiles = session.scalar(select(func.count()).select_from(Profile))

    with pytest.raises(ConflictError, match="--append"):
        copy_database(filled_sqlite, target)
    with target.writer() as session:
        assert session.scalar(select(func.count()).select_from(Profile)) == profiles

    again = copy_database(filled_sqlite, target, append=True)
    assert all(r.copied == 0 and r.verified for r in again)
    assert _checksums(target) == _checksums(filled_sqlite)
    target.dispose()


def test_postgres_to_sqlite_round_trip(
    filled_sqlite: SessionFactory, pg: PgEndpoints, pg_factory: SessionFactory, tmp_path: Path
) -> None:
    copy_database(filled_sqlite, pg_factory)
    back = _sqlite(tmp_path / "back.db")
    Store(back).count_profiles()  # migrates the empty file
    reports = copy_database(pg_factory, back)
    assert all(r.verified for r in reports)
    assert _checksums(back) == _checksums(filled_sqlite)
    back.dispose()


def test_cli_copy_prints_a_verified_table(
    filled_sqlite: SessionFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = str(filled_sqlite.storage.writer_url.url.database)
    filled_sqlite.dispose()
    target = tmp_path / "cli-target.db"
    code = main(["copy", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{target}"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "copy verified" in out and "profiles" in out
    code = main(["copy", "--from", f"sqlite:///{source}", "--to", f"sqlite:///{target}"])
    err = capsys.readouterr().err
    assert code != 0 and "--append" in err


def test_one_sqlite_file_spelled_two_ways_is_the_same_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from reflexio_store import ConfigurationError
    from reflexio_store.transfer.copy import copy_database

    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    path = tmp_path / "x.db"
    spellings = [f"sqlite:///{path}", "sqlite:///x.db", f"sqlite:///{tmp_path}/sub/../x.db"]
    factories = [SessionFactory.from_config(StorageConfigSQLite(db_url=u)) for u in spellings]
    factories[0].ensure_schema()
    for other in factories[1:]:
        with pytest.raises(ConfigurationError, match="same database"):
            copy_database(factories[0], other, append=True)


def test_a_row_postgresql_refuses_is_named_and_the_copy_can_be_finished(
    filled_sqlite: SessionFactory, pg_factory: SessionFactory
) -> None:
    """SQLite stores a NUL that PostgreSQL refuses (written by an older tool): the copy stops
    naming the table and the batch's first key, instead of a bare driver error; after the
    source is fixed, --append finishes it and the copy verifies."""
    import sqlite3

    from reflexio_store.transfer.copy import CopyError

    path = filled_sqlite.storage.writer_url.sqlite_path
    assert path is not None
    with sqlite3.connect(path) as conn:
        (victim,) = conn.execute("SELECT id FROM profiles ORDER BY id LIMIT 1 OFFSET 5").fetchone()
        conn.execute(
            "UPDATE profiles SET content = 'tea' || char(0) || 'time' WHERE id = ?", (victim,)
        )
    with pytest.raises(CopyError, match=r"Table profiles: the target refused a row .*id=\d+.*NUL"):
        copy_database(filled_sqlite, pg_factory, batch=4)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE profiles SET content = 'tea time' WHERE id = ?", (victim,))
    reports = copy_database(filled_sqlite, pg_factory, batch=4, append=True)
    assert all(r.verified for r in reports)
