"""Workflow rows decoded without the column types' processors keep their meaning: JSON objects
(NULL and JSON null as {}), aware UTC datetimes, whatever form another tool stored them in."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from reflexio_store import SessionFactory
from reflexio_store.store import Store
from reflexio_store.store.workflow_rows import state_from_row, states_from_rows


def _raw_insert(factory: SessionFactory, run_id: str, context: str | None, meta: str,
                created: str, updated: str) -> None:  # fmt: skip
    with factory.writer() as session:
        session.execute(
            text(
                "INSERT INTO workflow_runs (run_id, status, current_step_index, total_steps, "
                "pipeline_context, metadata, created_at, updated_at) "
                "VALUES (:r, 'running', 0, 0, :c, :m, :ca, :ua)"
            ),
            {"r": run_id, "c": context, "m": meta, "ca": created, "ua": updated},
        )


def test_sqlite_rows_written_by_another_tool(sqlite_factory: SessionFactory) -> None:
    store = Store(sqlite_factory)
    store.count_profiles()  # migrate
    _raw_insert(
        sqlite_factory, "other", "null", ' {"a": [1, {"b": null}]} ',
        "2026-01-01T05:00:00+02:00", "2026-01-01 04:00:00",
    )  # fmt: skip
    _raw_insert(sqlite_factory, "ours", '{"k": "v"}', "{}", "2026-01-02 00:00:00.250000",
                "2026-01-02 00:00:00.250000")  # fmt: skip
    state = store.load_state("other")
    assert state is not None
    assert state["pipeline_context"] == {}
    assert state["metadata"] == {"a": [1, {"b": None}]}
    assert state["created_at"] == datetime(2026, 1, 1, 3, tzinfo=UTC)
    assert state["created_at"].tzinfo is UTC and state["updated_at"].tzinfo is UTC
    assert state["updated_at"] == datetime(2026, 1, 1, 4, tzinfo=UTC)
    runs = store.list_runs(status="running")
    assert [r["run_id"] for r in runs] == ["ours", "other"]
    assert runs[0]["pipeline_context"] == {"k": "v"}
    assert runs[0]["created_at"] == datetime(2026, 1, 2, 0, 0, 0, 250000, tzinfo=UTC)
    assert runs[1] == state


def test_state_dicts_equal_on_both_databases(factory: SessionFactory) -> None:
    store = Store(factory)
    created = datetime(2026, 3, 1, 12, 30, 0, 123456, tzinfo=ZoneInfo("Asia/Tokyo"))
    store.save_state(
        "r1",
        {
            "status": "done",
            "pipeline_context": {"nested": {"list": [1, 2.5, "x", None, True]}},
            "metadata": {"tags": ["a"]},
            "created_at": created,
            "updated_at": created,
        },
    )
    loaded = store.load_state("r1")
    listed = store.list_runs(consistency="strong")
    assert listed == [loaded]
    assert loaded is not None
    assert loaded["created_at"] == created and loaded["created_at"].tzinfo is UTC
    assert loaded["pipeline_context"] == {"nested": {"list": [1, 2.5, "x", None, True]}}


def test_postgres_datetimes_in_another_zone_come_back_in_utc() -> None:
    tokyo = datetime(2026, 1, 1, 9, tzinfo=ZoneInfo("Asia/Tokyo"))
    row = ("r", None, None, None, "s", 0, 0, '{"a": 1}', None, tokyo, tokyo)
    state = state_from_row(row, "postgresql")
    assert state["created_at"] == datetime(2026, 1, 1, 0, tzinfo=UTC)
    assert state["created_at"].tzinfo is UTC
    assert state["pipeline_context"] == {"a": 1} and state["metadata"] == {}


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
_json_texts = st.one_of(
    _json_values.map(lambda v: json.dumps(v, separators=(",", ":"))),
    _json_values.map(lambda v: f" {json.dumps(v)}\n"),
    st.sampled_from(["{}", "null", "", "{", "[1]", '"x"']),
)
_sqlite_times = st.one_of(
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S.%f")),
    st.datetimes(timezones=st.just(ZoneInfo("Asia/Tokyo"))).map(datetime.isoformat),
    st.datetimes().map(lambda d: d.isoformat(timespec="seconds")),
)
_postgres_times = st.datetimes(
    timezones=st.sampled_from([UTC, ZoneInfo("UTC"), ZoneInfo("Asia/Tokyo")])
)


def _row(context: str, meta: str, created: object, updated: object) -> tuple[object, ...]:
    return ("r", "p", None, "1", "running", 1, 2, context, meta, created, updated)


def _decoded_one_by_one(rows: list[tuple[object, ...]], dialect: str) -> object:
    try:
        return [state_from_row(row, dialect) for row in rows]
    except (OverflowError, ValueError) as exc:
        return type(exc)


def _decoded_together(rows: list[tuple[object, ...]], dialect: str) -> object:
    try:
        return states_from_rows(rows, dialect)
    except (OverflowError, ValueError) as exc:
        return type(exc)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_json_texts, _json_texts, _sqlite_times, _sqlite_times), max_size=4))
def test_the_list_loop_decodes_sqlite_rows_as_state_from_row(rows: list[tuple[str, ...]]) -> None:
    """list_runs' one-loop decoding against the per-row decoder load_state uses: the same
    states (type of every datetime included), and the same refusal of an unreadable row."""
    built = [_row(*r) for r in rows]
    expected = _decoded_one_by_one(built, "sqlite")
    got = _decoded_together(built, "sqlite")
    assert got == expected
    if isinstance(got, list):
        assert all(s["created_at"].tzinfo is UTC for s in got)  # type: ignore[index]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(_json_texts, _json_texts, _postgres_times | st.none(), _postgres_times),
        max_size=4,
    )
)
def test_the_list_loop_decodes_postgres_rows_as_state_from_row(
    rows: list[tuple[object, ...]],
) -> None:
    built = [_row(*r) for r in rows]  # type: ignore[arg-type]
    expected = _decoded_one_by_one(built, "postgresql")
    got = _decoded_together(built, "postgresql")
    assert got == expected
    if isinstance(got, list):
        assert all(s["updated_at"].tzinfo is UTC for s in got)  # type: ignore[index]
