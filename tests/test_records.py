"""Evaluation results, change logs, playbook optimization, share links — SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from reflexio_store import NotFoundError, SessionFactory, ValidationError
from reflexio_store.models import (
    AgentSuccessEvaluationResult,
    PlaybookOptimizationCandidate,
    PlaybookOptimizationEvaluation,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
    ShareLink,
)
from reflexio_store.store import AsyncStore, Store
from tests.conftest import PgEndpoints


def _sync_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    if factory.backend == "postgresql":
        pg: PgEndpoints = request.getfixturevalue("pg")
        pg.wait_for_replica()


def _count(factory: SessionFactory, model: type) -> int:
    with factory.reader("strong") as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# -- evaluation results ---------------------------------------------------------------------


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
    assert _count(factory, AgentSuccessEvaluationResult) == 1
    store.save_evaluation_result("s1", "accuracy", agent_version="v1", is_success=True)
    store.save_evaluation_result("s2", "accuracy", agent_version="v2", is_success=False)
    _sync_replica(factory, request)
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


# -- change logs ----------------------------------------------------------------------------


def test_profile_change_logs(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    ids = []
    for i in range(5):
        log = store.add_profile_change_log(
            request_id=f"r{i}",
            user_id="u1" if i % 2 == 0 else "u2",
            added_profiles=[{"profile_id": f"p{i}", "content": "likes tea"}],
            removed_profiles=[],
            mentioned_profiles=[f"p{i - 1}"] if i else [],
        )
        ids.append(log.id)
    _sync_replica(factory, request)
    logs = store.list_profile_change_logs()
    assert [log.id for log in logs] == list(reversed(ids))
    assert logs[0].added_profiles == [{"profile_id": "p4", "content": "likes tea"}]
    assert [log.request_id for log in store.list_profile_change_logs(user_id="u1")] == [
        "r4",
        "r2",
        "r0",
    ]
    assert [log.request_id for log in store.list_profile_change_logs(limit=2, offset=1)] == [
        "r3",
        "r2",
    ]
    with pytest.raises(ValidationError, match="added_profiles"):
        store.add_profile_change_log(added_profiles={"not": "a list"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="limit"):
        store.list_profile_change_logs(limit=-1)


def test_playbook_aggregation_change_logs(
    factory: SessionFactory, request: pytest.FixtureRequest
) -> None:
    store = Store(factory)
    store.add_playbook_aggregation_change_log(
        playbook_name="pb", agent_version="v1", before=[], after=[{"id": 1}]
    )
    store.add_playbook_aggregation_change_log(
        playbook_name="pb", agent_version="v2", before=[{"id": 1}], after=[{"id": 2}]
    )
    store.add_playbook_aggregation_change_log(playbook_name="other", agent_version="v1")
    _sync_replica(factory, request)
    all_logs = store.list_playbook_aggregation_change_logs()
    assert [(log.playbook_name, log.agent_version) for log in all_logs] == [
        ("other", "v1"),
        ("pb", "v2"),
        ("pb", "v1"),
    ]
    pb = store.list_playbook_aggregation_change_logs(playbook_name="pb")
    assert [log.agent_version for log in pb] == ["v2", "v1"]
    one = store.list_playbook_aggregation_change_logs(playbook_name="pb", agent_version="v1")
    assert len(one) == 1 and one[0].after == [{"id": 1}] and one[0].before == []


# -- playbook optimization ------------------------------------------------------------------


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
    _sync_replica(factory, request)

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
    assert _count(factory, PlaybookOptimizationJob) == 1


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
    assert _count(factory, PlaybookOptimizationCandidate) == 0


# -- share links ----------------------------------------------------------------------------


def test_share_link_round_trip(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    issued = store.create_share_link("profile", "p1", ttl=3600)
    token = issued.token
    assert len(token) >= 40
    assert token not in repr(issued) and token not in repr(issued.record)
    # Only the SHA-256 hash is stored.
    with factory.reader("strong") as session:
        stored = session.execute(select(ShareLink.__table__)).all()
    assert len(stored) == 1
    assert token not in repr(stored)
    assert stored[0].token_hash == hashlib.sha256(token.encode()).hexdigest()
    never = store.create_share_link("profile", "p1")
    store.create_share_link("profile", "p2", expires_at=datetime.now(UTC) + timedelta(days=1))
    _sync_replica(factory, request)
    link = store.resolve_share_link(token)
    assert link is not None and (link.resource_type, link.resource_id) == ("profile", "p1")
    assert link.expires_at is not None and link.expires_at > datetime.now(UTC)
    assert store.resolve_share_link(token + "x") is None
    assert store.resolve_share_link(never.token) is not None
    assert len(store.list_share_links("profile", "p1")) == 2
    assert store.delete_share_link(token) is True
    assert store.delete_share_link(token) is False
    assert store.resolve_share_link(token, consistency="strong") is None
    assert len(store.list_share_links("profile", "p1", consistency="strong")) == 1


def test_share_link_expiry(factory: SessionFactory, request: pytest.FixtureRequest) -> None:
    store = Store(factory)
    expired = store.create_share_link(
        "playbook", "pb", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    live = store.create_share_link("playbook", "pb", ttl=timedelta(minutes=5))
    _sync_replica(factory, request)
    assert store.resolve_share_link(expired.token) is None
    assert store.resolve_share_link(live.token) is not None
    assert len(store.list_share_links("playbook", "pb")) == 1
    assert len(store.list_share_links("playbook", "pb", include_expired=True)) == 2
    assert store.delete_expired_share_links() == 1
    assert (
        len(store.list_share_links("playbook", "pb", include_expired=True, consistency="strong"))
        == 1
    )


def test_share_link_bad_input(factory: SessionFactory) -> None:
    store = Store(factory)
    with pytest.raises(ValidationError, match="not both"):
        store.create_share_link("p", "1", expires_at=datetime.now(UTC), ttl=5)
    with pytest.raises(ValidationError, match="timezone-aware"):
        store.create_share_link("p", "1", expires_at=datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match="ttl"):
        store.create_share_link("p", "1", ttl=-5)
    with pytest.raises(ValidationError, match="resource_type"):
        store.create_share_link("", "1")
    with pytest.raises(ValidationError) as info:
        store.resolve_share_link("")
    assert "token" in str(info.value)
    assert _count(factory, ShareLink) == 0


async def test_async_store(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        row = await store.save_evaluation_result("as", "e", agent_version="v", is_success=True)
        again = await store.save_evaluation_result("as", "e", agent_version="v", is_success=False)
        assert again.id == row.id and again.is_success is False
        job = await store.create_optimization_job(playbook_name="pb")
        cand = await store.add_optimization_candidate(job.id, "c")
        await store.add_optimization_evaluation(cand.id, score=1.0)
        await store.add_optimization_event(job.id, "started")
        detail = await store.get_optimization_job(job.id, consistency="strong")
        assert detail is not None and [c.id for c in detail.candidates] == [cand.id]
        assert await store.delete_optimization_job(job.id) is True
        assert await store.list_optimization_events(job.id, consistency="strong") == []
        issued = await store.create_share_link("r", "1", ttl=60)
        assert await store.resolve_share_link(issued.token, consistency="strong") is not None
    finally:
        await factory.adispose()
