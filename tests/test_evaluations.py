"""Agent success evaluation results — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.models import (
    AgentSuccessEvaluationResult,
)
from reflexio_store.store import AsyncStore, Store
from tests.support.store_helpers import count_rows, wait_for_replica


def test_evaluation_result_upsert(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    first = store.save_evaluation_result(
        "s1",
        "helpfulness",
        agent_version="v1",
        is_success=False,
        failure_type="wrong",
        failure_reason="bad answer",
        number_of_correction_per_session=2,
        is_escalated=True,
    )
    assert first.id is not None and first.is_success is False
    second = store.save_evaluation_result(
        "s1", "helpfulness", agent_version="v1", is_success=True, user_turns_to_resolution=3
    )
    # Saving twice updates the same row: every field replaced, created_at kept.
    assert second.id == first.id
    assert second.is_success is True
    assert second.failure_type is None and second.failure_reason is None
    assert second.user_turns_to_resolution == 3
    assert second.created_at == first.created_at
    assert count_rows(factory, AgentSuccessEvaluationResult) == 1
    store.save_evaluation_result("s1", "accuracy", agent_version="v1", is_success=True)
    store.save_evaluation_result("s2", "accuracy", agent_version="v2", is_success=False)
    wait_for_replica(factory, request)
    by_session = store.get_evaluation_results("s1")
    assert [(r.evaluation_name, r.is_success) for r in by_session] == [
        ("accuracy", True),
        ("helpfulness", True),
    ]
    v1 = store.list_evaluation_results("v1")
    assert [(r.session_id, r.evaluation_name) for r in v1] == [
        ("s1", "accuracy"),
        ("s1", "helpfulness"),
    ]
    assert [r.session_id for r in store.list_evaluation_results("v2")] == ["s2"]
    assert len(store.list_evaluation_results()) == 3
    assert len(store.list_evaluation_results(limit=1, offset=1)) == 1


def test_evaluation_result_with_embedding(factory: SessionFactory) -> None:
    store = Store(factory)
    vector = [0.0] * 511 + [1.0]
    row = store.save_evaluation_result("s", "e", embedding=vector)
    assert row.embedding is not None and list(row.embedding) == vector
    with pytest.raises(ValidationError, match="dimensions"):
        store.save_evaluation_result("s", "e", embedding=[1.0, 2.0])
    with pytest.raises(ValidationError, match="is_success"):
        store.save_evaluation_result("s", "e", is_success="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="session_id"):
        store.save_evaluation_result("", "e")
    # The failed saves changed nothing.
    rows = store.get_evaluation_results("s", consistency="strong")
    assert len(rows) == 1 and rows[0].embedding is not None


async def test_evaluation_results_through_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        row = await store.save_evaluation_result("as", "e", agent_version="v", is_success=True)
        again = await store.save_evaluation_result("as", "e", agent_version="v", is_success=False)
        assert again.id == row.id and again.is_success is False
    finally:
        await factory.adispose()
