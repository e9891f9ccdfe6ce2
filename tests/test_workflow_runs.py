"""Workflow run state (seed 002's backend API) on SQLite and PostgreSQL (primary + replica)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import pytest
from sqlalchemy import Table, insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.models import WorkflowRun
from reflexio_store.store import AsyncStore, Store
from reflexio_store.store.workflow import build_list_query
from tests.conftest import PgEndpoints

T0 = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


class Explain(Executable, ClauseElement):
    """EXPLAIN <statement>, with the statement's parameters bound and processed as usual."""

    inherit_cache = False

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt


@compiles(Explain)
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN " + str(compiler.process(element.stmt, **kw))


def _state(**overrides: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "pipeline_id": "data_processing",
        "pipeline_name": "Data Processing Pipeline",
        "pipeline_version": "1.0.0",
        "current_step_index": 2,
        "pipeline_context": {"input_data": "sample.csv", "rows": [1, 2.5, None, True]},
        "status": "running",
        "created_at": T0,
        "updated_at": T0,
        "total_steps": 5,
        "metadata": {"batch_id": "batch-001", "priority": "high"},
    }
    state.update(overrides)
    return state


def _sync_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    if factory.backend == "postgresql":
        pg: PgEndpoints = request.getfixturevalue("pg")
        pg.wait_for_replica()


def test_save_and_load_round_trip(factory: SessionFactory) -> None:
    store = Store(factory)
    assert store.load_state("run_123") is None
    store.save_state("run_123", _state())
    loaded = store.load_state("run_123")
    assert loaded is not None
    assert loaded == {"run_id": "run_123", **_state()}
    # JSON as Python objects, datetimes aware UTC — on both databases.
    assert isinstance(loaded["pipeline_context"], dict)
    assert isinstance(loaded["metadata"], dict)
    assert loaded["created_at"].tzinfo is not None
    assert loaded["created_at"].utcoffset() == timedelta(0)


def test_update_preserves_created_at(factory: SessionFactory) -> None:
    store = Store(factory)
    store.save_state("r", _state())
    later = T0 + timedelta(hours=1)
    store.save_state(
        "r",
        _state(
            status="completed",
            current_step_index=5,
            created_at=later,
            updated_at=later,
            pipeline_context={"done": True},
            metadata={},
        ),
    )
    loaded = store.load_state("r")
    assert loaded is not None
    assert loaded["created_at"] == T0
    assert loaded["updated_at"] == later
    assert loaded["status"] == "completed"
    assert loaded["current_step_index"] == 5
    assert loaded["pipeline_context"] == {"done": True}
    assert loaded["metadata"] == {}


def test_defaults_and_other_timezones(factory: SessionFactory) -> None:
    store = Store(factory)
    before = datetime.now(UTC)
    store.save_state("minimal", {"status": "pending"})
    loaded = store.load_state("minimal")
    assert loaded is not None
    assert loaded["pipeline_context"] == {} and loaded["metadata"] == {}
    assert loaded["current_step_index"] == 0 and loaded["total_steps"] == 0
    assert loaded["pipeline_id"] is None
    assert loaded["created_at"] >= before - timedelta(seconds=1)
    tz = datetime(2026, 1, 1, 14, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    store.save_state("tz", {"status": "x", "created_at": tz, "updated_at": tz})
    loaded = store.load_state("tz")
    assert loaded is not None
    assert loaded["created_at"] == datetime(2026, 1, 1, 14, 0, tzinfo=UTC)
    assert loaded["created_at"].utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("run_id", "state", "message"),
    [
        ("r", {"pipeline_name": "p"}, "status"),
        ("r", {"status": ""}, "status"),
        ("", {"status": "running"}, "run_id"),
        ("r", {"status": "running", "bogus": 1}, "Unknown workflow state field"),
        ("r", {"status": "running", "run_id": "other"}, "must match"),
        ("r", {"status": "running", "created_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ("r", {"status": "running", "created_at": "2026-01-01"}, "timezone-aware"),
        ("r", {"status": "running", "current_step_index": "2"}, "integer"),
        ("r", {"status": "running", "current_step_index": -1}, "between"),
        ("r", {"status": "running", "pipeline_context": [1]}, "mapping"),
        ("r", {"status": "running", "metadata": {"when": datetime.now(UTC)}}, "JSON"),
        ("r", {"status": "running", "metadata": {"x": float("nan")}}, "JSON"),
        ("r", ["status"], "mapping"),
    ],
)
def test_bad_state_is_refused(
    factory: SessionFactory, run_id: str, state: Any, message: str
) -> None:
    store = Store(factory)
    with pytest.raises(ValidationError, match=message):
        store.save_state(run_id, state)
    assert store.list_runs(consistency="strong") == []


def test_delete_state(factory: SessionFactory) -> None:
    store = Store(factory)
    store.save_state("a", _state())
    store.save_state("b", _state())
    assert store.delete_state("a") is True
    assert store.delete_state("a") is False
    assert store.load_state("a") is None
    assert store.load_state("b") is not None


def test_list_runs_filters_and_order(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    for i in range(6):
        store.save_state(
            f"run-{i}",
            _state(
                status="running" if i % 2 else "failed",
                pipeline_id=f"pid-{i % 3}",
                pipeline_name=f"name-{i % 3}",
                created_at=T0 + timedelta(minutes=i),
            ),
        )
    _sync_replica(factory, request)
    ids = [r["run_id"] for r in store.list_runs()]
    assert ids == [f"run-{i}" for i in (5, 4, 3, 2, 1, 0)]
    assert [r["run_id"] for r in store.list_runs(status="running")] == ["run-5", "run-3", "run-1"]
    assert [r["run_id"] for r in store.list_runs(pipeline_id="pid-0")] == ["run-3", "run-0"]
    assert [r["run_id"] for r in store.list_runs(pipeline_name="name-2", status="failed")] == [
        "run-2"
    ]
    assert [r["run_id"] for r in store.list_runs(limit=2, offset=1)] == ["run-4", "run-3"]
    # An offset with no limit (a syntax error in the seed's SQLite backend).
    assert [r["run_id"] for r in store.list_runs(offset=4)] == ["run-1", "run-0"]
    with pytest.raises(ValidationError, match="limit"):
        store.list_runs(limit=0)  # one pagination rule for every listing: limit 1..10,000
    first = store.list_runs(limit=1)[0]
    assert first == {
        "run_id": "run-5",
        **_state(
            status="running",
            pipeline_id="pid-2",
            pipeline_name="name-2",
            created_at=T0 + timedelta(minutes=5),
        ),
    }
    with pytest.raises(ValidationError, match="offset"):
        store.list_runs(offset=-1)
    with pytest.raises(ValidationError, match="limit"):
        store.list_runs(limit=-5)


def test_pagination_with_identical_created_at(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    ids = [f"r{uuid.uuid4().hex[:8]}" for _ in range(25)]
    for run_id in ids:
        store.save_state(run_id, _state(created_at=T0))
    _sync_replica(factory, request)
    pages = [store.list_runs(limit=10, offset=offset) for offset in (0, 10, 20)]
    assert [len(p) for p in pages] == [10, 10, 5]
    seen = [r["run_id"] for page in pages for r in page]
    assert len(seen) == len(set(seen)) == 25
    assert set(seen) == set(ids)
    assert seen == sorted(ids, reverse=True)  # run_id breaks the tie, descending


# (stored metadata, filter, expected match) — asserted identically on both databases.
CONTAINMENT_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("scalar equal", {"batch_id": "b1", "n": 2}, {"batch_id": "b1"}, True),
    ("scalar differs", {"batch_id": "b1"}, {"batch_id": "b2"}, False),
    ("missing key", {"batch_id": "b1"}, {"other": "b1"}, False),
    ("empty filter", {"a": 1}, {}, True),
    ("string vs number", {"n": 1}, {"n": "1"}, False),
    ("number vs string", {"n": "1"}, {"n": 1}, False),
    ("true vs 1", {"flag": 1}, {"flag": True}, False),
    ("1 vs true", {"flag": True}, {"flag": 1}, False),
    ("false vs 0", {"flag": 0}, {"flag": False}, False),
    ("bool equal", {"flag": False}, {"flag": False}, True),
    ("null equal", {"x": None}, {"x": None}, True),
    ("null vs missing", {}, {"x": None}, False),
    ("null vs value", {"x": 0}, {"x": None}, False),
    ("int vs float equal", {"n": 1.0}, {"n": 1}, True),
    ("float equal", {"n": 2.5}, {"n": 2.5}, True),
    ("list subset", {"tags": ["x", "y"]}, {"tags": ["x"]}, True),
    ("list order ignored", {"tags": ["x", "y"]}, {"tags": ["y", "x"]}, True),
    ("list element absent", {"tags": ["x", "y"]}, {"tags": ["z"]}, False),
    ("list partly absent", {"tags": ["x", "y"]}, {"tags": ["x", "z"]}, False),
    ("empty list", {"tags": ["x"]}, {"tags": []}, True),
    ("empty list vs scalar", {"tags": "x"}, {"tags": []}, False),
    ("scalar vs list", {"tags": ["x"]}, {"tags": "x"}, False),
    ("list vs scalar", {"tags": "x"}, {"tags": ["x"]}, False),
    ("list type mismatch", {"ids": [1, 2]}, {"ids": ["1"]}, False),
    ("list bool vs int", {"ids": [1]}, {"ids": [True]}, False),
    ("list null element", {"ids": [None, 1]}, {"ids": [None]}, True),
    ("nested dict", {"user": {"id": 1, "role": "admin"}}, {"user": {"id": 1}}, True),
    ("nested mismatch", {"user": {"id": 1, "role": "admin"}}, {"user": {"id": 2}}, False),
    ("nested missing key", {"user": {"id": 1}}, {"user": {"role": "admin"}}, False),
    ("nested vs scalar", {"user": "bob"}, {"user": {"id": 1}}, False),
    ("empty dict vs dict", {"user": {"id": 1}}, {"user": {}}, True),
    ("empty dict vs list", {"user": [1]}, {"user": {}}, False),
    ("deep nesting", {"a": {"b": {"c": [1, 2], "d": "e"}}}, {"a": {"b": {"c": [2]}}}, True),
    ("deep mismatch", {"a": {"b": {"c": [1, 2]}}}, {"a": {"b": {"c": [3]}}}, False),
    (
        "dict inside list",
        {"items": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]},
        {"items": [{"k": 2}]},
        True,
    ),
    (
        "dict inside list mismatch",
        {"items": [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}]},
        {"items": [{"k": 1, "v": "b"}]},
        False,
    ),
    ("list inside list", {"m": [[1, 2], [3]]}, {"m": [[2]]}, True),
    ("list inside list mismatch", {"m": [[1, 2], [3]]}, {"m": [[2, 3]]}, False),
    ("scalar text element vs dict", {"items": ["k"]}, {"items": [{"k": 1}]}, False),
    ("key with space", {"key with space": 1}, {"key with space": 1}, True),
    ("key with quote", {'we"ird': {"x": [1]}}, {'we"ird': {"x": [1]}}, True),
    ("key with quote mismatch", {'we"ird': 1}, {'we"ird': 2}, False),
    ("key with backslash", {"a\\b": True}, {"a\\b": True}, True),
    ("key with dot", {"a.b": 1, "a": {"b": 2}}, {"a.b": 1}, True),
    ("key with dot mismatch", {"a": {"b": 1}}, {"a.b": 1}, False),
    ("unicode", {"名前": "値"}, {"名前": "値"}, True),
    ("several keys all must match", {"a": 1, "b": 2}, {"a": 1, "b": 3}, False),
    ("several keys", {"a": 1, "b": [2, 3], "c": {"d": None}}, {"b": [3], "c": {"d": None}}, True),
]


def test_metadata_containment_same_on_both_databases(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    for i, (_name, stored, _filter, _expected) in enumerate(CONTAINMENT_CASES):
        store.save_state(f"case-{i:03d}", _state(metadata=stored))
    _sync_replica(factory, request)
    failures = []
    for i, (name, _stored, pattern, expected) in enumerate(CONTAINMENT_CASES):
        matched = {r["run_id"] for r in store.list_runs(metadata_filter=pattern)}
        # Every stored document that should match, by the same rules (PostgreSQL's @>).
        should = {
            f"case-{j:03d}"
            for j, (_n, other, _f, _e) in enumerate(CONTAINMENT_CASES)
            if _json_contains(other, pattern)
        }
        if (f"case-{i:03d}" in matched) != expected or matched != should:
            failures.append((name, sorted(matched), sorted(should)))
    assert failures == []


def _json_contains(doc: Any, pattern: Any) -> bool:
    """PostgreSQL jsonb @> rules, as a reference for the test table (not used by the store)."""
    if isinstance(pattern, dict):
        return isinstance(doc, dict) and all(
            k in doc and _json_contains(doc[k], v) for k, v in pattern.items()
        )
    if isinstance(pattern, list):
        return isinstance(doc, list) and all(
            any(_json_contains(d, p) for d in doc) for p in pattern
        )
    if isinstance(pattern, bool) or isinstance(doc, bool):
        return type(pattern) is type(doc) and pattern == doc
    if pattern is None:
        return doc is None
    if isinstance(pattern, (int, float)):
        return isinstance(doc, (int, float)) and doc == pattern
    return isinstance(doc, str) and doc == pattern


def test_reference_table_agrees_with_expectations() -> None:
    for name, stored, pattern, expected in CONTAINMENT_CASES:
        assert _json_contains(stored, pattern) == expected, name


def test_metadata_filter_combined_with_other_filters(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    store.save_state("a", _state(status="running", metadata={"tags": ["x", "y"]}))
    store.save_state("b", _state(status="failed", metadata={"tags": ["x"]}))
    store.save_state("c", _state(status="running", metadata={"tags": ["y"]}))
    _sync_replica(factory, request)
    assert [
        r["run_id"] for r in store.list_runs(status="running", metadata_filter={"tags": ["x"]})
    ] == ["a"]
    with pytest.raises(ValidationError, match="metadata_filter"):
        store.list_runs(metadata_filter={"x": float("inf")})
    with pytest.raises(ValidationError, match="metadata_filter"):
        store.list_runs(metadata_filter={"x": object()})
    with pytest.raises(ValidationError, match="metadata_filter"):
        store.list_runs(metadata_filter=["x"])  # type: ignore[call-overload]


def test_sqlite_containment_is_sql_not_python(sqlite_factory: SessionFactory) -> None:
    stmt = build_list_query("sqlite", metadata_filter={"tags": ["x"], "user": {"id": 1}})
    sql = str(stmt.compile(dialect=sqlite_factory.writer_engine.dialect))
    assert "json_each" in sql and "json_type" in sql and "json_extract" in sql


def test_cleanup_old_workflows(factory: SessionFactory) -> None:
    store = Store(factory)
    now = datetime.now(UTC)
    for i in range(7):
        old = now - timedelta(days=40 + i)
        store.save_state(f"old-{i}", _state(created_at=old, updated_at=old))
    store.save_state("recent", _state(created_at=now - timedelta(days=50), updated_at=now))
    store.save_state("new", _state(created_at=now, updated_at=now))
    assert store.cleanup_old_workflows(30) == 7
    assert store.cleanup_old_workflows(30) == 0
    remaining = {r["run_id"] for r in store.list_runs(consistency="strong")}
    assert remaining == {"recent", "new"}
    with pytest.raises(ValidationError, match="days_old"):
        store.cleanup_old_workflows(-1)


@pytest.mark.parametrize(
    "days_old",
    [1e6, 36_501, 10**30, 1e308, float("inf"), float("-inf"), float("nan"), -0.5, True, "30"],
)
def test_cleanup_old_workflows_refuses_out_of_range_days(
    factory: SessionFactory, days_old: Any
) -> None:
    # Huge values used to escape as a raw OverflowError from `now - timedelta(days=...)`.
    store = Store(factory)
    store.save_state("kept", _state())
    with pytest.raises(ValidationError, match="days_old"):
        store.cleanup_old_workflows(days_old)
    assert store.load_state("kept") is not None


def test_cleanup_old_workflows_accepts_the_largest_allowed_days(factory: SessionFactory) -> None:
    store = Store(factory)
    store.save_state("kept", _state())
    assert store.cleanup_old_workflows(36_500) == 0
    assert store.cleanup_old_workflows(0) == 1


@pytest.mark.parametrize("run_id", ["a\x00b", "\x00", "", "   ", None, 7])
def test_run_id_with_nul_or_not_text_is_a_validation_error(
    factory: SessionFactory, run_id: Any
) -> None:
    # A NUL in run_id used to reach PostgreSQL and fail there with a raw driver error.
    store = Store(factory)
    with pytest.raises(ValidationError, match="run_id"):
        store.load_state(run_id)
    with pytest.raises(ValidationError, match="run_id"):
        store.delete_state(run_id)
    with pytest.raises(ValidationError, match="run_id"):
        store.save_state(run_id, _state())
    assert store.list_runs(consistency="strong") == []


async def test_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        await store.save_state("async-run", _state(metadata={"tags": ["a", "b"]}))
        loaded = await store.load_state("async-run")
        assert loaded == {"run_id": "async-run", **_state(metadata={"tags": ["a", "b"]})}
        runs = await store.list_runs(metadata_filter={"tags": ["b"]}, consistency="strong")
        assert [r["run_id"] for r in runs] == ["async-run"]
        assert await store.cleanup_old_workflows(10_000) == 0
        assert await store.delete_state("async-run") is True
        assert await store.load_state("async-run") is None
    finally:
        await factory.adispose()


@pytest.mark.postgres
def test_pg_metadata_filter_uses_gin_index(pg_factory: SessionFactory) -> None:
    rows = [
        {
            "run_id": f"bulk-{i:05d}",
            "status": "running",
            "pipeline_context": {},
            "metadata": {"batch_id": f"batch-{i % 500}", "tags": [f"t{i % 7}"]},
            "created_at": T0 + timedelta(seconds=i),
            "updated_at": T0,
        }
        for i in range(5000)
    ]
    schema = pg_factory.storage.schema
    assert schema
    with pg_factory.writer() as session:
        session.execute(insert(cast(Table, WorkflowRun.__table__)), rows)
    with pg_factory.writer() as session:
        conn = session.connection()
        # Raw SQL below is not schema-translated: point the search_path at the test schema.
        conn.exec_driver_sql(f'SET LOCAL search_path TO "{schema}", public')
        conn.exec_driver_sql("ANALYZE workflow_runs")
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        stmt = build_list_query("postgresql", metadata_filter={"batch_id": "batch-7"}, limit=50)
        plan = "\n".join(row[0] for row in conn.execute(Explain(stmt)))
        assert "ix_workflow_runs_metadata_gin" in plan, plan
        found = [
            r["run_id"]
            for r in Store(pg_factory).list_runs(
                metadata_filter={"batch_id": "batch-7"}, consistency="strong"
            )
        ]
    assert len(found) == 10
    assert found == sorted(found, reverse=True)
