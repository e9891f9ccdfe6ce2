"""What differs between PostgreSQL and SQLite means the same on both (reflexio_store.dialect)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from reflexio_store import SessionFactory
from reflexio_store.dialect import (
    dialect_name,
    insert_or_update,
    json_contains,
    json_list_contains,
)
from reflexio_store.models import OperationState, Profile, WorkflowRun
from reflexio_store.store import Store


def test_dialect_name_of_session_connection_and_engine(factory: SessionFactory) -> None:
    expected = factory.backend
    assert dialect_name(factory.writer_engine) == expected
    with factory.writer_engine.connect() as conn:
        assert dialect_name(conn) == expected
    with factory.writer() as session:
        assert dialect_name(session) == expected
        session.info.pop("backend", None)  # a session made elsewhere: asks its bind
        assert dialect_name(session) == expected


def test_json_list_contains_helper(factory: SessionFactory) -> None:
    store = Store(factory)
    store.add_profiles(
        [
            {"profile_id": "p1", "user_id": "u", "content": "c", "tags": ["a", "b"]},
            {"profile_id": "p2", "user_id": "u", "content": "c", "tags": []},
        ]
    )
    with factory.writer() as session:
        query = select(Profile.profile_id).where(json_list_contains(Profile.tags, "b"))
        assert session.scalars(query).all() == ["p1"]


def test_containment_statements_are_cached_with_their_own_values(factory: SessionFactory) -> None:
    """The same statement shape runs from SQLAlchemy's compiled cache; each run must still use
    its own bound values (both dialects' spellings carry parameters)."""
    store = Store(factory)
    store.add_profiles(
        [
            {"profile_id": "p1", "user_id": "u", "content": "c", "tags": ["a"]},
            {"profile_id": "p2", "user_id": "u", "content": "c", "tags": ["b"]},
        ]
    )
    with factory.writer() as session:
        for tag, expected in [("a", ["p1"]), ("b", ["p2"]), ("c", []), ("a", ["p1"])]:
            query = select(Profile.profile_id).where(json_list_contains(Profile.tags, tag))
            assert session.scalars(query).all() == expected
    for run_id, batch in [("r1", "x"), ("r2", "y")]:
        store.save_state(run_id, {"status": "done", "metadata": {"batch": batch}})
    with factory.writer() as session:
        for batch, expected in [("x", ["r1"]), ("y", ["r2"]), ("z", [])]:
            query = select(WorkflowRun.run_id).where(
                json_contains(WorkflowRun.run_metadata, {"batch": batch})
            )
            assert session.scalars(query).all() == expected


def test_one_statement_compiles_to_each_dialects_spelling() -> None:
    stmt = select(WorkflowRun.run_id).where(json_contains(WorkflowRun.run_metadata, {"k": [1]}))
    pg_sql = str(stmt.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    sqlite_sql = str(stmt.compile(dialect=sqlite.dialect()))
    assert "@>" in pg_sql and "json_each" not in pg_sql
    assert "json_each" in sqlite_sql and "@>" not in sqlite_sql


@pytest.mark.parametrize(
    ("stored", "pattern", "matches"),
    [
        ({"a": 1}, {"a": 1}, True),
        ({"a": 1}, {"a": "1"}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": [1, 2, 3]}, {"a": [3, 1]}, True),
        ({"a": [1, 2]}, {"a": [4]}, False),
        ({"a": {"b": {"c": None}}, "d": 0}, {"a": {"b": {"c": None}}}, True),
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}, False),
        ({'we"ird': "v"}, {'we"ird': "v"}, True),
        ({"a": [{"b": 1, "c": 2}]}, {"a": [{"b": 1}]}, True),
        ({}, {}, True),
    ],
)
def test_json_contains_means_the_same_on_both(
    factory: SessionFactory, stored: dict[str, Any], pattern: dict[str, Any], matches: bool
) -> None:
    with factory.writer() as session:
        session.execute(
            insert_or_update(session, OperationState, ["service_name"], ["state"]).values(
                service_name="s", state=stored
            )
        )
        query = select(OperationState.service_name).where(
            json_contains(OperationState.state, pattern)
        )
        assert session.scalars(query).all() == (["s"] if matches else [])


def test_insert_or_update_is_built_once_per_dialect(factory: SessionFactory) -> None:
    with factory.writer() as session:
        first = insert_or_update(session, OperationState, ["service_name"], ["state"])
        again = insert_or_update(session, OperationState, ["service_name"], ["state"])
        assert first is again
