"""Small helpers shared by the store's entity tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from reflexio_store import SessionFactory
from reflexio_store.store import Store

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).random(512).astype(np.float32).tolist()  # type: ignore[no-any-return]


def statuses(store: Store, **filters: Any) -> dict[str, str]:
    """profile_id -> status of every profile matching `filters`, read on the primary."""
    rows = store.list_profiles(consistency="strong", limit=1000, **filters)
    return {p.profile_id: p.status.value for p in rows}


def wait_for_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    """Wait until the replica has what the primary committed (no-op on SQLite)."""
    if factory.backend == "postgresql":
        request.getfixturevalue("pg").wait_for_replica()


def count_rows(factory: SessionFactory, model: type) -> int:
    with factory.reader("strong") as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)
