"""The status lifecycle (promote, archive, restore) and its per-scope lock, on both databases."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory
from reflexio_store.migrations import upgrade
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store, lifecycle, profiles
from tests.conftest import PgEndpoints, make_pg_config
from tests.support.store_helpers import statuses


def _seed_lifecycle(store: Store) -> None:
    store.add_profiles(
        [
            {"profile_id": "old1", "user_id": "u", "content": "o1", "status": "current"},
            {"profile_id": "old2", "user_id": "u", "content": "o2", "status": "current"},
            {"profile_id": "arch", "user_id": "u", "content": "a", "status": "archived"},
            {"profile_id": "new1", "user_id": "u", "content": "n1"},
            {"profile_id": "other_cur", "user_id": "v", "content": "x", "status": "current"},
            {"profile_id": "other_pen", "user_id": "v", "content": "y"},
        ]
    )


def test_promote_pending_profiles(store: Store) -> None:
    _seed_lifecycle(store)
    result = store.promote_pending_profiles("u")
    assert result == lifecycle.Promotion(archived=2, promoted=1)
    assert statuses(store) == {
        "old1": "archived",
        "old2": "archived",
        "arch": "archived",
        "new1": "current",
        "other_cur": "current",  # other user untouched
        "other_pen": "pending",
    }
    # No pending rows: the current ones stay current.
    assert store.promote_pending_profiles("u") == lifecycle.Promotion(0, 0)
    assert statuses(store, user_id="u")["new1"] == "current"


def test_failed_promotion_leaves_current_rows_untouched(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_lifecycle(store)
    before = statuses(store)

    def explode(*args: Any, **kwargs: Any) -> int:
        raise RuntimeError("generation crashed between the two updates")

    # The first UPDATE (current -> archived) runs, then the second step fails in the same
    # transaction: the rollback must restore everything.
    monkeypatch.setattr(lifecycle, "activate_pending", explode)
    with pytest.raises(RuntimeError, match="crashed"):
        store.promote_pending_profiles("u")
    assert statuses(store) == before


def test_failed_generation_writes_no_pending_rows(store: Store, factory: SessionFactory) -> None:
    _seed_lifecycle(store)
    before = statuses(store)
    with pytest.raises(RuntimeError), factory.writer() as session:
        profiles.add_profiles(session, [{"user_id": "u", "content": "half-done"}])
        raise RuntimeError("model call failed before promotion")
    assert statuses(store) == before


def test_archive_and_restore_profiles(store: Store) -> None:
    _seed_lifecycle(store)
    assert store.archive_profiles(["old1", "arch", "missing"]) == 1
    assert statuses(store, user_id="u")["old1"] == "archived"
    assert store.restore_profiles(["old1", "arch", "new1"]) == 2  # new1 is pending: unchanged
    got = statuses(store, user_id="u")
    assert got["old1"] == "current" and got["arch"] == "current" and got["new1"] == "pending"


def test_promotion_lock_is_per_schema(
    pg: PgEndpoints, pg_schema: str, pg_factory: SessionFactory
) -> None:
    """The promotion advisory lock covers one organization (schema): the same user id promoted
    in another schema must not wait for it; in the same schema it still must."""
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    upgrade(resolve_storage(make_pg_config(pg, other_schema), StorageSettings()))
    other = SessionFactory.from_config(make_pg_config(pg, other_schema), settings=StorageSettings())
    try:
        for f in (pg_factory, other):
            Store(f).add_profiles([{"user_id": "u", "content": "p", "status": "pending"}])
        with pg_factory.writer() as holder:
            assert profiles.promote_pending_profiles(holder, "u").promoted == 1
            # `holder` keeps its transaction (and the advisory lock) open from here on.
            with other.writer() as session:
                session.execute(text("SET LOCAL lock_timeout = '3s'"))
                assert profiles.promote_pending_profiles(session, "u").promoted == 1
            same = SessionFactory.from_config(
                make_pg_config(pg, pg_schema), settings=StorageSettings()
            )
            try:
                with (
                    pytest.raises(OperationalError, match="lock timeout"),
                    same.writer() as session,
                ):
                    session.execute(text("SET LOCAL lock_timeout = '200ms'"))
                    profiles.promote_pending_profiles(session, "u")
            finally:
                same.dispose()
    finally:
        other.dispose()
        engine = create_engine(pg.primary_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE')
        engine.dispose()
