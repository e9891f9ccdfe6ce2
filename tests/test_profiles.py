"""Profiles: add, get, list filters, count, update, delete — SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql, sqlite

from reflexio_store.enums import Status
from reflexio_store.errors import ConflictError, NotFoundError, ValidationError
from reflexio_store.models import Profile
from reflexio_store.store import Store
from reflexio_store.types import Embedding
from tests.support.store_helpers import T0, vec


def test_add_profiles_defaults_and_get(store: Store, sync_replica: Callable[[], None]) -> None:
    ids = store.add_profiles(
        [
            {"user_id": "u", "content": "likes tea", "embedding": vec(1), "tags": ["food"]},
            {"user_id": "u", "content": "lives in Paris", "profile_id": "p-paris"},
            {"user_id": "u", "content": "current one", "status": "current"},
        ]
    )
    assert ids[1] == "p-paris" and len(ids[0]) == 32 and len(set(ids)) == 3
    sync_replica()
    first = store.get_profile(ids[0])
    assert first is not None
    assert first.status is Status.PENDING
    assert first.tags == ["food"] and first.extractor_names == []
    assert first.embedding is not None
    assert np.allclose(first.embedding, vec(1), atol=1e-6)
    assert first.created_at.tzinfo is not None
    assert store.get_profile(ids[2]).status is Status.CURRENT  # type: ignore[union-attr]
    assert store.get_profile("nope") is None
    got = store.get_profiles_by_ids(["p-paris", "missing", ids[0]])
    assert [p.profile_id for p in got] == ["p-paris", ids[0]]
    # One batch keeps its input order, newest first.
    assert [p.profile_id for p in store.list_profiles(user_id="u")] == ids[::-1]


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"user_id": "u", "content": "x", "embedding": [0.1] * 3}, "dimensions"),
        ({"user_id": "u", "content": "x", "embedding": [0.0] * 512}, "zeros"),
        ({"user_id": "u", "content": "x", "status": "live"}, "Unknown status"),
        ({"user_id": "u"}, "content"),
        ({"content": "x"}, "user_id"),
        ({"user_id": "u", "content": "x", "tags": "food"}, "tags"),
        ({"user_id": "u", "content": "x", "colour": "red"}, "unknown field"),
        ({"user_id": "u", "content": "x", "expires_at": datetime(2030, 1, 1)}, "naive"),
    ],
)
def test_invalid_profile_writes_nothing(store: Store, item: dict[str, Any], message: str) -> None:
    good = {"user_id": "u", "content": "valid"}
    with pytest.raises(ValidationError, match=message):
        store.add_profiles([good, item])
    assert store.count_profiles() == 0


def test_duplicate_profile_id_conflicts(store: Store) -> None:
    store.add_profiles([{"user_id": "u", "content": "a", "profile_id": "p1"}])
    with pytest.raises(ConflictError, match="profile_id 'p1' already exists; use update_profile "):
        store.add_profiles(
            [
                {"user_id": "u", "content": "b", "profile_id": "p2"},
                {"user_id": "u", "content": "c", "profile_id": "p1"},
            ]
        )
    with pytest.raises(ValidationError, match="Duplicate"):
        store.add_profiles([{"user_id": "u", "content": "b", "profile_id": "x"}] * 2)
    assert store.count_profiles() == 1


def test_list_profiles_filters_in_sql(store: Store, sync_replica: Callable[[], None]) -> None:
    now = datetime.now(UTC)
    store.add_profiles(
        [
            {
                "profile_id": "a",
                "user_id": "u1",
                "content": "a",
                "status": "current",
                "source": "chat",
                "extractor_names": ["food", "travel"],
                "tags": ["x", "y"],
                "created_at": T0,
            },
            {
                "profile_id": "b",
                "user_id": "u1",
                "content": "b",
                "status": "pending",
                "source": "email",
                "extractor_names": ["food"],
                "tags": ["xy"],
                "created_at": T0 + timedelta(hours=1),
                "expires_at": now - timedelta(days=1),
            },
            {
                "profile_id": "c",
                "user_id": "u1",
                "content": "c",
                "status": "archived",
                "extractor_names": ["travel"],
                "tags": ["x"],
                "created_at": T0 + timedelta(hours=2),
                "expires_at": now + timedelta(days=1),
            },
            {"profile_id": "d", "user_id": "u2", "content": "d", "created_at": T0},
        ]
    )
    sync_replica()

    def ids(**filters: Any) -> list[str]:
        return [p.profile_id for p in store.list_profiles(**filters)]

    assert ids(user_id="u1") == ["c", "b", "a"]
    assert ids(user_id="u1", status="current") == ["a"]
    assert ids(user_id="u1", status=[Status.PENDING, "archived"]) == ["c", "b"]
    assert ids(source="email") == ["b"]
    assert ids(extractor_name="food") == ["b", "a"]
    assert ids(extractor_name="foo") == []
    # Containment means the same on both databases: ["x"] is in ["x", "y"], "x" is not in ["xy"].
    assert ids(tags=["x"]) == ["c", "a"]
    assert ids(tags=["x", "y"]) == ["a"]
    assert ids(tags=["z"]) == []
    # Time range is half-open [start, end) and compares real timestamps.
    # Equal created_at (a and d): the later-inserted row (higher key) first.
    assert ids(created_from=T0, created_to=T0 + timedelta(hours=2)) == ["b", "d", "a"]
    assert ids(user_id="u1", created_from=T0 + timedelta(hours=1)) == ["c", "b"]
    assert ids(user_id="u1", created_to=T0 + timedelta(hours=1)) == ["a"]
    assert ids(user_id="u1", not_expired=True) == ["c", "a"]
    assert ids(user_id="u1", not_expired=True, now=now + timedelta(days=2)) == ["a"]
    assert ids(user_id="u1", limit=1, offset=1) == ["b"]
    assert store.count_profiles(user_id="u1", extractor_name="travel") == 2
    assert store.count_profiles(tags=["x"], status="current") == 1
    with pytest.raises(ValidationError, match="Unknown status"):
        store.list_profiles(status="live")


def test_update_profile(store: Store) -> None:
    (pid,) = store.add_profiles([{"user_id": "u", "content": "old", "embedding": vec(1)}])
    updated = store.update_profile(pid, {"content": "new", "embedding": vec(2), "tags": ["t"]})
    assert updated.content == "new" and updated.tags == ["t"]
    assert updated.last_modified_at is not None
    again = store.get_profile(pid, consistency="strong")
    assert again is not None and again.content == "new"
    assert np.allclose(again.embedding, vec(2), atol=1e-6)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="dimensions"):
        store.update_profile(pid, {"embedding": [1.0, 2.0], "content": "never"})
    with pytest.raises(ValidationError, match="cannot be changed"):
        store.update_profile(pid, {"profile_id": "other"})
    with pytest.raises(ValidationError, match="content"):
        store.update_profile(pid, {"content": None})
    with pytest.raises(NotFoundError):
        store.update_profile("missing", {"content": "x"})
    assert store.get_profile(pid, consistency="strong").content == "new"  # type: ignore[union-attr]


def test_delete_profiles(store: Store) -> None:
    store.add_profiles(
        [
            {"profile_id": "a", "user_id": "u1", "content": "a", "status": "current"},
            {"profile_id": "b", "user_id": "u1", "content": "b"},
            {"profile_id": "c", "user_id": "u2", "content": "c"},
            {"profile_id": "d", "user_id": "u2", "content": "d", "status": "archived"},
        ]
    )
    assert store.delete_profiles(["a", "missing"]) == 1
    assert store.delete_profiles_by_status("archived") == 1
    assert store.delete_profiles_by_status("pending", user_id="u1") == 1
    assert store.count_profiles() == 1
    assert store.delete_profiles_by_user("u2") == 1
    assert store.count_profiles() == 0
    with pytest.raises(ValidationError):
        store.delete_profiles([])


def test_ids_are_checked_and_large_id_lists_work(store: Store) -> None:
    ids = store.add_profiles(
        [{"user_id": "u", "content": "a", "profile_id": None}, {"user_id": "u", "content": "b"}]
    )
    assert all(len(i) == 32 for i in ids)
    with pytest.raises(ValidationError, match="integer id"):
        store.get_user_playbook("abc")  # type: ignore[call-overload]
    with pytest.raises(ValidationError, match="text"):
        store.get_profiles_by_ids([1, 2])  # type: ignore[list-item]
    with pytest.raises(ValidationError, match="profile_id"):
        store.add_profiles([{"user_id": "u", "content": "c", "profile_id": "  "}])
    # More ids than one IN list may hold on either database: split into chunks, same result.
    many = [f"missing-{i}" for i in range(12_000)] + [ids[1]]
    assert [p.profile_id for p in store.get_profiles_by_ids(many, consistency="strong")] == [ids[1]]
    assert store.archive_profiles(many) == 1
    assert store.delete_profiles([*many, ids[0]]) == 2
    assert store.count_profiles() == 0


def test_embeddings_come_back_as_the_stored_float32_values(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    """Both databases return exactly the float32 values they store (PostgreSQL sends them in
    pgvector's binary form); values that float32 cannot hold come back rounded to it."""
    dims = store.factory.storage.embedding_dimensions
    wanted = [0.1 + i / 3 for i in range(dims)]  # none of these is a float32 value
    row = {"user_id": "u", "content": "x", "embedding": wanted, "status": "current"}
    (pid,) = store.add_profiles([row])
    sync_replica()
    stored = [float(np.float32(x)) for x in wanted]
    assert stored != wanted
    profile = store.get_profile(pid)
    assert profile is not None and profile.embedding == stored
    hits = store.search_profiles(embedding=wanted, mode="vector", include_embedding=True)
    assert [h.item.embedding for h in hits] == [stored]
    # SQL text selecting the column with the type still decodes (from the vector's text form).
    schema = store.factory.storage.schema
    table = f'"{schema}".profiles' if schema else "profiles"
    typed = text(f"SELECT embedding FROM {table}").columns(embedding=Embedding(dims))
    with store.factory.reader("strong") as session:
        assert session.execute(typed).scalar_one() == stored


def test_postgres_selects_vectors_in_binary() -> None:
    stmt = select(Profile.embedding)
    assert "vector_send(profiles.embedding)" in str(stmt.compile(dialect=postgresql.dialect()))
    assert "vector_send" not in str(stmt.compile(dialect=sqlite.dialect()))
