"""Requests and interactions on SQLite and PostgreSQL (primary + replica)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, literal, select, text

from reflexio_store import SessionFactory
from reflexio_store.errors import ConflictError, ValidationError
from reflexio_store.models import Interaction, ProfileChangeLog, Request
from reflexio_store.search.sql import portable_tsquery
from reflexio_store.store import AsyncStore, Store
from tests.conftest import PgEndpoints

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(factory: SessionFactory) -> Store:
    return Store(factory)


@pytest.fixture
def sync_replica(factory: SessionFactory, pg: PgEndpoints) -> Callable[[], None]:
    """Wait for the replica to replay every write so far (no-op without a replica)."""

    def wait() -> None:
        if factory.has_replica:
            pg.wait_for_replica()

    return wait


def fulltext_hits(factory: SessionFactory, word: str) -> int:
    """Interactions found by the database's own full-text index for `word`."""
    with factory.writer() as session:
        if factory.backend == "sqlite":
            sql = text("SELECT count(*) FROM interactions_fts WHERE interactions_fts MATCH :w")
            return int(session.execute(sql, {"w": word}).scalar_one())
        # Core, not text(): the engine maps tables into the test's schema.
        query = (
            select(func.count())
            .select_from(Interaction)
            .where(
                Interaction.search_vector.op("@@")(
                    portable_tsquery(Interaction.__table__, literal(word))  # type: ignore[arg-type]
                )
            )
        )
        return int(session.execute(query).scalar_one())


def test_add_request_with_interactions_and_get(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    request = store.add_request(
        "alice",
        [
            {"role": "user", "content": "I prefer green tea", "tools_used": ["search"]},
            {"role": "assistant", "content": "Noted"},
        ],
        request_id="r1",
        session_id="s1",
        agent_version="v1",
    )
    assert request.request_id == "r1"
    assert [i.content for i in request.interactions] == ["I prefer green tea", "Noted"]
    sync_replica()
    got = store.get_request("r1")
    assert got is not None
    assert got.user_id == "alice" and got.session_id == "s1" and got.agent_version == "v1"
    assert [i.role for i in got.interactions] == ["user", "assistant"]
    assert got.interactions[0].tools_used == ["search"]
    assert all(i.user_id == "alice" for i in got.interactions)
    assert store.get_request("missing") is None
    assert store.count_requests(user_id="alice") == 1
    assert store.count_interactions(request_id="r1") == 2


def test_add_requests_bulk_keeps_order_and_counts(store: Store) -> None:
    ids = store.add_requests(
        [
            {"user_id": "u", "interactions": [{"content": f"m{i}-{j}"} for j in range(3)]}
            for i in range(50)
        ]
    )
    assert len(ids) == 50 and len(set(ids)) == 50
    assert store.count_requests(user_id="u") == 50
    assert store.count_interactions(user_id="u") == 150
    newest = store.get_requests_by_user("u", limit=3, consistency="strong")
    # Rows of one batch keep their input order: newest first means reverse input order.
    assert [r.request_id for r in newest] == ids[::-1][:3]


def test_bad_interaction_rolls_back_whole_batch(store: Store) -> None:
    batch = [
        {"user_id": "u", "request_id": "ok", "interactions": [{"content": "fine"}]},
        {"user_id": "u", "request_id": "bad", "interactions": [{"content": 42}]},
    ]
    with pytest.raises(ValidationError, match="content"):
        store.add_requests(batch)
    with pytest.raises(ValidationError, match="unknown field"):
        store.add_requests([{"user_id": "u", "interactions": [{"contnet": "typo"}]}])
    with pytest.raises(ValidationError, match="dimensions"):
        store.add_requests([{"user_id": "u", "interactions": [{"embedding": [1.0, 2.0]}]}])
    with pytest.raises(ValidationError, match="user_id"):
        store.add_requests([{"session_id": "s"}])
    with pytest.raises(ValidationError, match="differs"):
        store.add_requests([{"user_id": "u", "interactions": [{"user_id": "v"}]}])
    assert store.count_requests() == 0
    assert store.count_interactions() == 0


def test_duplicate_request_id_is_a_conflict_and_writes_nothing(store: Store) -> None:
    store.add_requests([{"user_id": "u", "request_id": "dup"}])
    with pytest.raises(ConflictError, match="request_id 'dup' already exists"):
        store.add_requests(
            [
                {"user_id": "u", "request_id": "new", "interactions": [{"content": "x"}]},
                {"user_id": "u", "request_id": "dup"},
            ]
        )
    assert store.count_requests() == 1
    assert store.count_interactions() == 0


def test_requests_by_user_newest_first_with_pagination(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    store.add_requests(
        [
            {"user_id": "u", "request_id": f"r{i}", "created_at": T0 + timedelta(minutes=i)}
            for i in range(5)
        ]
        # Same timestamp: the tie is broken by request_id, descending.
        + [{"user_id": "u", "request_id": "tie-a", "created_at": T0}]
        + [{"user_id": "other", "request_id": "x", "created_at": T0 + timedelta(days=1)}]
    )
    sync_replica()
    page1 = store.get_requests_by_user("u", limit=2)
    page2 = store.get_requests_by_user("u", limit=2, offset=2)
    page3 = store.get_requests_by_user("u", limit=10, offset=4)
    assert [r.request_id for r in page1] == ["r4", "r3"]
    assert [r.request_id for r in page2] == ["r2", "r1"]
    assert [r.request_id for r in page3] == ["tie-a", "r0"]
    with pytest.raises(ValidationError, match="limit"):
        store.get_requests_by_user("u", limit=0)
    with pytest.raises(ValidationError, match="offset"):
        store.get_requests_by_user("u", offset=-1)


def test_get_sessions_groups_and_paginates(store: Store, sync_replica: Callable[[], None]) -> None:
    rows = [
        ("a1", "sa", 0),
        ("b1", "sb", 1),
        ("a2", "sa", 2),
        ("c1", "sc", 3),
        ("n1", None, 4),
        ("b2", "sb", 5),
    ]
    store.add_requests(
        [
            {
                "user_id": "u",
                "request_id": rid,
                "session_id": sid,
                "created_at": T0 + timedelta(minutes=m),
                "interactions": [{"content": f"text of {rid}"}],
            }
            for rid, sid, m in rows
        ]
        + [{"user_id": "v", "request_id": "v1", "session_id": "sa"}]
    )
    sync_replica()
    sessions = store.get_sessions("u", limit=10)
    # Most recently active first: sb (b2 at 5), null session (4), sc (3), sa (a2 at 2).
    assert [s.session_id for s in sessions] == ["sb", None, "sc", "sa"]
    assert [r.request_id for r in sessions[0].requests] == ["b2", "b1"]
    assert [r.request_id for r in sessions[3].requests] == ["a2", "a1"]
    assert sessions[0].last_request_at == T0 + timedelta(minutes=5)
    assert sessions[0].requests[0].interactions[0].content == "text of b2"
    page = store.get_sessions("u", limit=2, offset=1)
    assert [s.session_id for s in page] == [None, "sc"]
    assert store.get_sessions("nobody") == []


def test_delete_request_cascades_to_interactions_and_fulltext(
    store: Store, factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    store.add_request("u", [{"content": "zebra crossing"}, {"content": "zebra"}], request_id="r")
    store.add_request("u", [{"content": "giraffe"}], request_id="keep")
    assert fulltext_hits(factory, "zebra") == 2
    assert store.delete_request("r") is True
    assert store.delete_request("r") is False
    assert fulltext_hits(factory, "zebra") == 0
    assert fulltext_hits(factory, "giraffe") == 1
    assert store.count_interactions() == 1
    sync_replica()
    assert store.get_request("r") is None
    assert store.get_request("keep") is not None


def test_delete_user_data_removes_everything_of_one_user(
    store: Store, factory: SessionFactory
) -> None:
    for user in ("gone", "kept"):
        store.add_requests(
            [{"user_id": user, "interactions": [{"content": f"{user} walrus"}]} for _ in range(2)]
        )
        store.add_profiles([{"user_id": user, "content": f"{user} profile"}])
        up = store.add_user_playbooks([{"user_id": user, "playbook_name": "p", "content": "c"}])
        agent = store.add_agent_playbooks([{"playbook_name": "p", "content": "agg"}])
        store.add_agent_playbook_sources(agent[0], up)
    with factory.writer() as session:
        session.add_all([ProfileChangeLog(user_id="gone"), ProfileChangeLog(user_id="kept")])
    deleted = store.delete_user_data("gone")
    assert deleted == {
        "interactions": 2,
        "requests": 2,
        "profiles": 1,
        "user_playbooks": 1,
        "profile_change_logs": 1,
    }
    assert store.count_requests(user_id="gone") == 0
    assert store.count_interactions(user_id="gone") == 0
    assert store.count_profiles(user_id="gone") == 0
    assert store.count_user_playbooks(user_id="gone") == 0
    assert store.count_requests(user_id="kept") == 2
    assert store.count_interactions(user_id="kept") == 2
    assert store.count_profiles(user_id="kept") == 1
    assert fulltext_hits(factory, "walrus") == 2
    with factory.writer() as session:
        logs = session.execute(select(func.count()).select_from(ProfileChangeLog)).scalar_one()
        assert logs == 1
        # Agent playbooks are shared: they stay, but lose the deleted user's source link.
        agent_ids = [a.agent_playbook_id for a in store.list_agent_playbooks(consistency="strong")]
    assert len(agent_ids) == 2
    linked = [len(store.get_agent_playbook_sources(a, consistency="strong")) for a in agent_ids]
    assert sorted(linked) == [0, 1]


def test_get_interactions_newest_first(store: Store) -> None:
    store.add_request("u", [{"content": "one"}, {"content": "two"}], request_id="r1")
    store.add_request("u", [{"content": "three"}], request_id="r2")
    got = store.get_interactions(user_id="u", consistency="strong")
    assert [i.content for i in got] == ["three", "two", "one"]
    only = store.get_interactions(request_id="r1", limit=1, consistency="strong")
    assert [i.content for i in only] == ["two"]


def test_models_hold_rows_written_by_store(store: Store, factory: SessionFactory) -> None:
    """The ORM relationship sees interactions written through the bulk path."""
    store.add_requests([{"user_id": "u", "request_id": "r", "interactions": [{"content": "a"}]}])
    with factory.writer() as session:
        request = session.get(Request, "r")
        assert request is not None and [i.content for i in request.interactions] == ["a"]
        assert session.scalars(select(Interaction.request_id)).all() == ["r"]


async def test_async_store_runs_the_same_operations(factory: SessionFactory) -> None:
    astore = AsyncStore(factory)
    try:
        ids = await astore.add_requests([{"user_id": "u", "interactions": [{"content": "hi"}]}])
        got = await astore.get_request(ids[0], consistency="strong")
        assert got is not None and got.interactions[0].content == "hi"
        assert await astore.count_interactions(user_id="u") == 1
    finally:
        await factory.adispose()
