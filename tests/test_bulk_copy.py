"""Batches of profiles go through binary COPY on PostgreSQL (bulk_copy.py) and INSERT
elsewhere: the rows read back the same either way, and a duplicate key is a ConflictError with
nothing written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import event

from reflexio_store import SessionFactory
from reflexio_store.errors import ConflictError
from reflexio_store.store import Store
from reflexio_store.store.bulk_copy import COPY_MIN_ROWS

T0 = datetime(2026, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def _rows(count: int, dims: int, prefix: str) -> list[dict[str, object]]:
    rng = np.random.default_rng(3)
    return [
        {
            "profile_id": f"{prefix}{i}",
            "user_id": f"u{i % 3}",
            "content": f"likes green tea number {i}",
            "custom_features": {"score": i, "nested": {"ok": True}},
            "extractor_names": ["x", "y"],
            "tags": ["t"],
            "status": "current",
            "embedding": rng.standard_normal(dims).astype(np.float32),
            "created_at": T0 + timedelta(seconds=i),
        }
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [COPY_MIN_ROWS - 1, COPY_MIN_ROWS + 4])
def test_profiles_read_back_the_same_on_both_paths(factory: SessionFactory, count: int) -> None:
    store = Store(factory)
    dims = factory.storage.embedding_dimensions
    rows = _rows(count, dims, "p")
    statements: list[str] = []
    event.listen(factory.writer_engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    assert store.add_profiles(rows) == [r["profile_id"] for r in rows]
    used_copy = any(s.startswith("SELECT oid FROM pg_type") for s in statements) or not any(
        "INSERT INTO" in s for s in statements
    )
    assert used_copy == (factory.backend == "postgresql" and count >= COPY_MIN_ROWS)
    got = {p.profile_id: p for p in store.list_profiles(limit=100, consistency="strong")}
    assert len(got) == count
    for row in rows:
        profile = got[str(row["profile_id"])]
        assert profile.content == row["content"]
        assert profile.custom_features == row["custom_features"]
        assert profile.extractor_names == ["x", "y"] and profile.tags == ["t"]
        assert str(getattr(profile.status, "value", profile.status)) == "current"
        assert profile.created_at == row["created_at"]
        assert profile.embedding is not None
        np.testing.assert_allclose(profile.embedding, row["embedding"], rtol=1e-6)  # type: ignore[arg-type]
    # The generated full-text column is filled by COPY too.
    hits = store.search_profiles("green tea", mode="text", user_id="u1", consistency="strong")
    assert hits


def test_duplicate_key_in_a_copy_batch_is_a_conflict_and_writes_nothing(
    factory: SessionFactory,
) -> None:
    store = Store(factory)
    dims = factory.storage.embedding_dimensions
    store.add_profiles(_rows(1, dims, "dup"))
    batch = _rows(COPY_MIN_ROWS + 2, dims, "dup")[1:] + _rows(1, dims, "dup")
    with pytest.raises(ConflictError, match="profile_id 'dup0' already exists"):
        store.add_profiles(batch)
    assert store.count_profiles() == 1
