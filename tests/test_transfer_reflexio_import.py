"""`reflexio-store import-reflexio`: a database written by Reflexio's own SQLiteStorage
(reflexio-ai 0.2.8, patched scratch copy) is imported, then read back through
ReflexioStoreStorage: every entity equals what Reflexio itself reads, ids included."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

pytest.importorskip("reflexio", reason="needs the reflexio extra: pip install -e '.[test]'")

from reflexio.models.api_schema.domain import Status

from reflexio_store import SessionFactory, StorageConfigSQLite
from reflexio_store.cli import main
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.errors import ValidationError
from reflexio_store.integrations.reflexio import ReflexioStoreStorage
from reflexio_store.models import Interaction, OperationState, Profile
from reflexio_store.settings import StorageSettings
from reflexio_store.transfer.reflexio_import import (
    ReflexioSchemaError,
    import_reflexio,
)
from tests.conftest import PgEndpoints, make_pg_config
from tests.support.reflexio_reference import run_patched

HASHER = HashingEmbedder()


def embed(texts: list[str]) -> list[list[float]]:
    return [[float(x) for x in v] for v in HASHER.embed_many(texts)]


@pytest.fixture(scope="module")
def reflexio_db(
    reference_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("reflexio-source")
    path = folder / "reflexio.db"
    module = "tests.support.reflexio_import_source"
    expected = run_patched(reference_path, folder, module, "IMPORT-SOURCE ", str(path))
    return path, expected


def _dump(items: Any) -> Any:
    if isinstance(items, list):
        return [_dump(i) for i in items]
    return items.model_dump(mode="json") if hasattr(items, "model_dump") else items


def _read_back(storage: ReflexioStoreStorage) -> dict[str, Any]:
    every = [None, Status.PENDING, Status.ARCHIVED]
    return {
        "profiles": storage.get_all_profiles(limit=100, status_filter=every),
        "interactions": storage.get_all_interactions(limit=100),
        "user_playbooks": storage.get_user_playbooks(limit=100, status_filter=every),
        "agent_playbooks": storage.get_agent_playbooks(limit=100),
        "profile_change_logs": storage.get_profile_change_logs(),
        "aggregation_logs": storage.get_playbook_aggregation_change_logs("tone", "v1"),
        "operation_state": storage.get_operation_state("generation::u1"),
        "requests": [storage.get_request(f"r{i}") for i in range(3)],
    }


def _by_key(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    return {row[key]: row for row in rows}


def _assert_same_as_reflexio(expected: dict[str, Any], got: dict[str, Any]) -> None:
    got = {k: _dump(v) for k, v in got.items()}
    keys = {
        "profiles": "profile_id",
        "interactions": "interaction_id",
        "user_playbooks": "user_playbook_id",
        "agent_playbooks": "agent_playbook_id",
    }
    for name, key in keys.items():
        assert _by_key(got[name], key) == _by_key(expected[name], key), name
    for name in ("requests", "profile_change_logs", "aggregation_logs"):
        assert got[name] == expected[name], name
    assert (
        got["operation_state"]["operation_state"] == expected["operation_state"]["operation_state"]
    )


@contextmanager
def _edited_copy(source: Path, path: Path) -> Iterator[sqlite3.Connection]:
    """A copy of the Reflexio file at `path`, open for edits (committed on leaving)."""
    with sqlite3.connect(source) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
        yield dst


def _empty_store(tmp_path: Path) -> SessionFactory:
    factory = _sqlite_factory(tmp_path / "store.db")
    factory.ensure_schema()
    return factory


def _sqlite_factory(path: Path) -> SessionFactory:
    return SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{path}"), settings=StorageSettings()
    )


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_import_keeps_every_entity_as_reflexio_reads_it(
    backend: str,
    reflexio_db: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    source, expected = reflexio_db
    if backend == "sqlite":
        factory = _sqlite_factory(tmp_path / "store.db")
        config: Any = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'store.db'}")
    else:
        pg: PgEndpoints = request.getfixturevalue("pg")
        schema = request.getfixturevalue("pg_schema")
        factory = SessionFactory.from_config(make_pg_config(pg, schema), settings=StorageSettings())
        config = make_pg_config(pg, schema)
    factory.ensure_schema()
    seen: dict[str, int] = {}
    reports = import_reflexio(source, factory, progress=lambda t, d, n: seen.update({t: d}))
    by_source = {r.source_table: r for r in reports}
    assert by_source["profiles"].imported == by_source["profiles"].source_rows == 6
    assert by_source["interactions"].imported == 7
    assert by_source["requests"].imported == 4  # three requests and the orphan's
    evaluations = by_source["agent_success_evaluation_result"]
    assert (evaluations.source_rows, evaluations.imported, evaluations.merged) == (2, 1, 1)
    assert seen["profiles"] == 6

    storage = ReflexioStoreStorage("import-org", config=config, embedder=embed)
    if backend == "postgres":
        request.getfixturevalue("pg").wait_for_replica()
    _assert_same_as_reflexio(expected, _read_back(storage))

    # Stored embeddings came along: a vector search finds the profile by its own vector.
    with sqlite3.connect(source) as conn:
        raw = conn.execute("SELECT embedding FROM profiles WHERE profile_id = 'u1-p0'").fetchone()
    with factory.writer() as session:
        kept = session.scalar(select(Profile.embedding).where(Profile.profile_id == "u1-p0"))
    assert kept is not None and raw[0] is not None
    assert [round(x, 5) for x in kept] == [round(x, 5) for x in __import__("json").loads(raw[0])]

    # Running it again adds nothing and changes nothing.
    again = import_reflexio(source, factory)
    assert all(r.imported == 0 for r in again)
    with factory.writer() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 7
        # New rows get keys past the imported ids.
        top = session.scalar(select(func.max(Interaction.interaction_id)))
    storage.add_user_interactions_bulk(
        "u9",
        [
            __import__("reflexio.models.api_schema.domain", fromlist=["x"]).Interaction(
                user_id="u9", request_id="new", created_at=1_760_000_100, content="after import"
            )
        ],
    )
    with factory.writer() as session:
        assert session.scalar(select(func.max(Interaction.interaction_id))) > top  # type: ignore[operator]
    factory.dispose()


def test_unknown_layout_is_refused_before_anything_is_written(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = reflexio_db
    newer = tmp_path / "newer.db"
    with _edited_copy(source, newer) as dst:
        dst.execute("ALTER TABLE profiles ADD COLUMN tenant TEXT")
    factory = _empty_store(tmp_path)
    with pytest.raises(ReflexioSchemaError, match=r"profiles has columns .* tenant.*0\.2\.8"):
        import_reflexio(newer, factory)
    not_reflexio = tmp_path / "other.db"
    sqlite3.connect(not_reflexio).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ReflexioSchemaError, match="not a Reflexio"):
        import_reflexio(not_reflexio, factory)
    with factory.writer() as session:
        assert session.scalar(select(func.count()).select_from(Profile)) == 0


def test_embeddings_of_another_size_are_refused_with_the_setting_named(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = reflexio_db
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'small.db'}"),
        settings=StorageSettings(embedding_dimensions=8),
    )
    factory.ensure_schema()
    with pytest.raises(ValidationError, match="REFLEXIO_EMBEDDING_DIMENSIONS"):
        import_reflexio(source, factory)
    with factory.writer() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 0


def test_cli_import_prints_verified_counts(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, _ = reflexio_db
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["import-reflexio", str(source), "--url", url]) == 0
    out = capsys.readouterr().out
    assert "import verified" in out and "profiles" in out
    assert main(["import-reflexio", str(tmp_path / "missing.db"), "--url", url]) != 0
    assert "No Reflexio database" in capsys.readouterr().err


def test_a_table_with_null_keys_is_refused_instead_of_looping(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Reflexio's TEXT PRIMARY KEY columns allow NULL: such a row is refused by name (the
    keyset paging used to re-read the first batch forever)."""
    source, _ = reflexio_db
    copy = tmp_path / "nulls.db"
    with _edited_copy(source, copy) as dst:
        dst.execute(
            "INSERT INTO _operation_state (service_name, operation_state) VALUES (NULL, '{}')"
        )
    factory = _empty_store(tmp_path)
    with pytest.raises(ReflexioSchemaError, match=r"_operation_state has 1 row.*NULL"):
        import_reflexio(copy, factory)


def test_a_table_with_a_repeated_key_is_refused_instead_of_skipping_rows(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """A file whose table lacks Reflexio's PRIMARY KEY can repeat a key; paging by key would
    skip repeats at a batch boundary, so the file is refused by table and key."""
    source, _ = reflexio_db
    copy = tmp_path / "repeated.db"
    with _edited_copy(source, copy) as dst:
        dst.execute("ALTER TABLE _operation_state RENAME TO keyed")
        dst.execute("CREATE TABLE _operation_state AS SELECT * FROM keyed")
        dst.execute("DROP TABLE keyed")
        dst.execute(
            "INSERT INTO _operation_state (service_name, operation_state) VALUES ('twice', '{}')"
        )
        dst.execute(
            "INSERT INTO _operation_state (service_name, operation_state) VALUES ('twice', '{}')"
        )
    factory = _empty_store(tmp_path)
    with pytest.raises(ReflexioSchemaError, match=r"_operation_state has 1 service_name value"):
        import_reflexio(copy, factory)
    with factory.reader("strong") as session:
        assert session.execute(select(func.count()).select_from(OperationState)).scalar() == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_row_the_target_refuses_leaves_nothing_imported(
    reflexio_db: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    """One bad profile (an all-zero embedding, checked as it is bound) used to leave the tables
    before it committed: the import is one transaction."""
    source, _ = reflexio_db
    bad = tmp_path / "bad.db"
    with _edited_copy(source, bad) as dst:
        row = dst.execute("SELECT profile_id FROM profiles LIMIT 1").fetchone()
        dst.execute(
            "UPDATE profiles SET custom_features = ? WHERE profile_id = ?",
            ('{"a": "\\u0000"}', row[0]),
        )
    if backend == "sqlite":
        factory = _sqlite_factory(tmp_path / "store.db")
    else:
        factory = request.getfixturevalue("pg_factory")
    factory.ensure_schema()
    with pytest.raises(ValidationError):
        import_reflexio(bad, factory)
    with factory.writer() as session:
        for model in (Interaction, Profile):
            assert session.scalar(select(func.count()).select_from(model)) == 0


@pytest.mark.parametrize(
    ("table", "column", "value", "problem"),
    [
        ("profiles", "content", "tea\x00time", "NUL"),
        (
            "profiles",
            "status",
            "bogus",
            "profiles row profile_id='.*' cannot be imported: ValueError",
        ),
        ("profiles", "status", "sk-live-" + "A" * 100_000, "ValueError"),
        (
            "interactions",
            "created_at",
            "sk-live-" + "A" * 100_000,
            "1: str is not an ISO timestamp",
        ),
        ("profiles", "user_id", "u" * 3000, "user_id is larger than 1024 bytes"),
        ("interactions", "tools_used", '[{"foo": 1}]', "interactions row"),
        ("interactions", "created_at", "9999-12-31T23:59:59-05:00", "interactions row"),
        ("profiles", "custom_features", "[" * 100_000 + "]" * 100_000, "profiles row"),
        ("profiles", "custom_features", "[1, 2]", "expected a JSON dict"),
        ("profiles", "extractor_names", '"abc"', "expected a JSON list of text"),
        ("user_playbooks", "source_interaction_ids", '"abc"', "expected a JSON list"),
        ("agent_success_evaluation_result", "regular_vs_shadow", "bogus", "regular_vs_shadow"),
    ],
)
def test_a_corrupt_value_is_refused_naming_its_row_before_anything_is_written(
    reflexio_db: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    table: str,
    column: str,
    value: str,
    problem: str,
) -> None:
    source, _ = reflexio_db
    bad = tmp_path / "corrupt.db"
    with _edited_copy(source, bad) as dst:
        dst.execute(
            f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = (SELECT min(rowid) FROM "{table}")',
            (value,),
        )
    factory = _empty_store(tmp_path)
    with pytest.raises(ValidationError, match=problem) as caught:
        import_reflexio(bad, factory)
    assert len(str(caught.value)) < 1000 and "sk-live" not in str(caught.value)
    with factory.writer() as session:
        assert session.scalar(select(func.count()).select_from(Interaction)) == 0


def test_a_file_name_with_url_characters_is_opened_read_only(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    source, _ = reflexio_db
    odd = tmp_path / "odd?name#1%41.db"
    with _edited_copy(source, odd):
        pass  # the file as it is, under an odd name
    factory = _empty_store(tmp_path)
    imported = import_reflexio(odd, factory)
    assert sum(t.imported for t in imported) > 0
    # Nothing created beside it: the read-only URI kept its whole name (no stray "odd" file).
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(("odd?name", "store.db"))]


def test_rows_are_streamed_a_batch_at_a_time(
    reflexio_db: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory does not grow with the file: the first batch of interactions is written before
    the next is read and converted."""
    from reflexio_store.transfer import reflexio_import as ri

    source, _ = reflexio_db
    big = tmp_path / "big.db"
    with _edited_copy(source, big) as dst:
        top = dst.execute("SELECT max(interaction_id) FROM interactions").fetchone()[0]
        columns = [r[1] for r in dst.execute("PRAGMA table_info(interactions)")]
        others = ", ".join(f'"{c}"' for c in columns if c != "interaction_id")
        for n in range(1, 2 * ri.BATCH + 1):
            dst.execute(
                f"INSERT INTO interactions (interaction_id, {others}) "
                f"SELECT {top + n}, {others} FROM interactions WHERE interaction_id = ?",
                (top,),
            )
    converted = {"interactions": 0}
    original = ri._Rows.interactions

    def counting(self: Any, row: Any) -> dict[str, Any]:
        converted["interactions"] += 1
        return original(self, row)

    monkeypatch.setattr(ri._Rows, "interactions", counting)
    seen_at_first_write: list[int] = []

    def progress(table: str, done: int, total: int) -> None:
        if table == "interactions" and not seen_at_first_write:
            seen_at_first_write.append(converted["interactions"])

    factory = _empty_store(tmp_path)
    report = {t.source_table: t for t in import_reflexio(big, factory, progress=progress)}
    assert seen_at_first_write == [ri.BATCH]
    assert converted["interactions"] > 2 * ri.BATCH
    assert report["interactions"].present == report["interactions"].source_rows
