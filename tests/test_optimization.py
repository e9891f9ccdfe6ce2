"""Playbook optimization jobs, candidates, evaluations and events — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from reflexio_store import NotFoundError, SessionFactory, ValidationError
from reflexio_store.models import (
    PlaybookOptimizationCandidate,
    PlaybookOptimizationEvaluation,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
)
from reflexio_store.store import AsyncStore, Store
from tests.support.store_helpers import count_rows, wait_for_replica


def test_optimization_job_lifecycle_and_cascade(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    job = store.create_optimization_job(
        playbook_name="pb", agent_version="v1", config={"rounds": 3, "model": None}
    )
    other = store.create_optimization_job(playbook_name="pb2")
    c1 = store.add_optimization_candidate(job.id, "Always greet", candidate_metadata={"k": [1]})
    c2 = store.add_optimization_candidate(job.id, "Never greet", score=0.25)
    store.add_optimization_candidate(other.id, "Other job")
    e1 = store.add_optimization_evaluation(c1.id, score=0.9, details={"n": 10})
    store.add_optimization_evaluation(c1.id, score=0.8)
    store.add_optimization_evaluation(c2.id, score=0.1)
    events = [store.add_optimization_event(job.id, f"step-{i}", {"i": i}) for i in range(3)]
    store.add_optimization_event(other.id, "started")
    updated = store.update_optimization_job(job.id, status="done", result={"best": c1.id})
    assert updated.status == "done" and updated.result == {"best": c1.id}
    assert updated.config == {"rounds": 3, "model": None}
    wait_for_replica(factory, request)

    detail = store.get_optimization_job(job.id)
    assert detail is not None
    assert detail.job.status == "done"
    assert [c.content for c in detail.candidates] == ["Always greet", "Never greet"]
    assert detail.candidates[0].candidate_metadata == {"k": [1]}
    assert [e.score for e in detail.evaluations[c1.id]] == [0.9, 0.8]
    assert detail.evaluations[c1.id][0].details == {"n": 10}
    assert detail.evaluations[c1.id][0].id == e1.id
    assert [e.score for e in detail.evaluations[c2.id]] == [0.1]
    listed = store.list_optimization_events(job.id)
    assert [e.id for e in listed] == [e.id for e in reversed(events)]
    assert listed[0].payload == {"i": 2}
    assert [e.event_type for e in store.list_optimization_events(job.id, limit=1, offset=1)] == [
        "step-1"
    ]
    assert [j.id for j in store.list_optimization_jobs(status="done")] == [job.id]
    assert store.get_optimization_job(10_000_000) is None

    assert store.delete_optimization_job(job.id) is True
    assert store.delete_optimization_job(job.id) is False
    # The job's events, candidates and their evaluations went with it; the other job stays.
    with factory.reader("strong") as session:
        assert session.scalars(select(PlaybookOptimizationEvent.job_id)).all() == [other.id]
        assert session.scalars(select(PlaybookOptimizationCandidate.job_id)).all() == [other.id]
        assert session.scalars(select(PlaybookOptimizationEvaluation.id)).all() == []
    assert count_rows(factory, PlaybookOptimizationJob) == 1


def test_optimization_missing_parents(factory: SessionFactory) -> None:
    store = Store(factory)
    with pytest.raises(NotFoundError, match="job"):
        store.add_optimization_candidate(424242, "x")
    with pytest.raises(NotFoundError, match="job"):
        store.add_optimization_event(424242, "x")
    with pytest.raises(NotFoundError, match="candidate"):
        store.add_optimization_evaluation(424242, score=1.0)
    with pytest.raises(NotFoundError, match="job"):
        store.update_optimization_job(424242, status="x")
    job = store.create_optimization_job()
    with pytest.raises(ValidationError, match="score"):
        store.add_optimization_candidate(job.id, "x", score=float("nan"))
    with pytest.raises(ValidationError, match="config"):
        store.create_optimization_job(config=[1, 2])  # type: ignore[arg-type]
    assert count_rows(factory, PlaybookOptimizationCandidate) == 0


async def test_optimization_through_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        job = await store.create_optimization_job(playbook_name="pb")
        cand = await store.add_optimization_candidate(job.id, "c")
        await store.add_optimization_evaluation(cand.id, score=1.0)
        await store.add_optimization_event(job.id, "started")
        detail = await store.get_optimization_job(job.id, consistency="strong")
        assert detail is not None and [c.id for c in detail.candidates] == [cand.id]
        assert await store.delete_optimization_job(job.id) is True
        assert await store.list_optimization_events(job.id, consistency="strong") == []
    finally:
        await factory.adispose()
