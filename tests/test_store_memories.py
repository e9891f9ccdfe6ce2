"""Profiles, user playbooks and agent playbooks on SQLite and PostgreSQL (primary + replica)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory
from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.errors import ConflictError, NotFoundError, ValidationError
from reflexio_store.migrations import upgrade
from reflexio_store.models import AgentPlaybookSource, Profile
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store, memories
from tests.conftest import PgEndpoints, make_pg_config

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


def vec(seed: int) -> list[float]:
    return np.random.default_rng(seed).random(512).astype(np.float32).tolist()  # type: ignore[no-any-return]


def statuses(store: Store, **filters: Any) -> dict[str, str]:
    rows = store.list_profiles(consistency="strong", limit=1000, **filters)
    return {p.profile_id: p.status.value for p in rows}


# -- profiles: add / get ----------------------------------------------------------------------


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
    with pytest.raises(ConflictError):
        store.add_profiles(
            [
                {"user_id": "u", "content": "b", "profile_id": "p2"},
                {"user_id": "u", "content": "c", "profile_id": "p1"},
            ]
        )
    with pytest.raises(ValidationError, match="Duplicate"):
        store.add_profiles([{"user_id": "u", "content": "b", "profile_id": "x"}] * 2)
    assert store.count_profiles() == 1


# -- profiles: filters -----------------------------------------------------------------------


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


def test_json_list_contains_helper(factory: SessionFactory) -> None:
    store = Store(factory)
    store.add_profiles(
        [
            {"profile_id": "p1", "user_id": "u", "content": "c", "tags": ["a", "b"]},
            {"profile_id": "p2", "user_id": "u", "content": "c", "tags": []},
        ]
    )
    with factory.writer() as session:
        dialect = memories.dialect_name(session)
        query = select(Profile.profile_id).where(
            memories.json_list_contains(Profile.tags, "b", dialect)
        )
        assert session.scalars(query).all() == ["p1"]


# -- profiles: update / delete ------------------------------------------------------------------


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


# -- lifecycle ---------------------------------------------------------------------------------


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
    assert result == memories.Promotion(archived=2, promoted=1)
    assert statuses(store) == {
        "old1": "archived",
        "old2": "archived",
        "arch": "archived",
        "new1": "current",
        "other_cur": "current",  # other user untouched
        "other_pen": "pending",
    }
    # No pending rows: the current ones stay current.
    assert store.promote_pending_profiles("u") == memories.Promotion(0, 0)
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
    monkeypatch.setattr(memories, "_activate_pending", explode)
    with pytest.raises(RuntimeError, match="crashed"):
        store.promote_pending_profiles("u")
    assert statuses(store) == before


def test_failed_generation_writes_no_pending_rows(store: Store, factory: SessionFactory) -> None:
    _seed_lifecycle(store)
    before = statuses(store)
    with pytest.raises(RuntimeError), factory.writer() as session:
        memories.add_profiles(session, [{"user_id": "u", "content": "half-done"}])
        raise RuntimeError("model call failed before promotion")
    assert statuses(store) == before


def test_archive_and_restore_profiles(store: Store) -> None:
    _seed_lifecycle(store)
    assert store.archive_profiles(["old1", "arch", "missing"]) == 1
    assert statuses(store, user_id="u")["old1"] == "archived"
    assert store.restore_profiles(["old1", "arch", "new1"]) == 2  # new1 is pending: unchanged
    got = statuses(store, user_id="u")
    assert got["old1"] == "current" and got["arch"] == "current" and got["new1"] == "pending"


# -- user playbooks --------------------------------------------------------------------------


def test_user_playbooks(store: Store, sync_replica: Callable[[], None]) -> None:
    ids = store.add_user_playbooks(
        [
            {"user_id": "u", "playbook_name": "tone", "content": "be brief", "status": "current"},
            {
                "user_id": "u",
                "playbook_name": "tone",
                "content": "be briefer",
                "agent_version": "2",
            },
            {"user_id": "u", "playbook_name": "format", "content": "use lists"},
            {"user_id": None, "playbook_name": "tone", "content": "shared", "status": "current"},
            {"user_id": None, "playbook_name": "tone", "content": "shared new"},
        ]
    )
    assert ids == sorted(ids) and len(ids) == 5
    sync_replica()
    pb = store.get_user_playbook(ids[1])
    assert pb is not None and pb.status is Status.PENDING and pb.source_interaction_ids == []
    assert [p.user_playbook_id for p in store.get_user_playbooks_by_ids([ids[2], ids[0]])] == [
        ids[2],
        ids[0],
    ]
    assert [p.content for p in store.list_user_playbooks(user_id="u", playbook_name="tone")] == [
        "be briefer",
        "be brief",
    ]
    assert [p.content for p in store.list_user_playbooks(agent_version="2")] == ["be briefer"]
    assert store.count_user_playbooks(status="pending") == 3

    result = store.promote_pending_user_playbooks("u", "tone")
    assert result == memories.Promotion(archived=1, promoted=1)
    by_id = {p.user_playbook_id: p for p in store.list_user_playbooks(consistency="strong")}
    assert by_id[ids[0]].status is Status.ARCHIVED
    assert by_id[ids[1]].status is Status.CURRENT
    assert by_id[ids[2]].status is Status.PENDING  # other playbook_name
    assert by_id[ids[3]].status is Status.CURRENT  # user None is its own scope
    assert store.promote_pending_user_playbooks(None, "tone") == memories.Promotion(1, 1)

    updated = store.update_user_playbook(ids[2], {"content": "use numbered lists"})
    assert updated.content == "use numbered lists"
    with pytest.raises(ValidationError, match="Unknown status"):
        store.update_user_playbook(ids[2], {"status": "bogus"})
    assert store.delete_user_playbooks_by_playbook_name("format") == 1
    assert store.delete_user_playbooks_by_status("archived", user_id="u") == 1
    assert store.delete_user_playbooks([ids[1]]) == 1
    assert store.delete_user_playbooks_by_user("u") == 0
    assert store.count_user_playbooks() == 2


# -- agent playbooks ---------------------------------------------------------------------------


def test_agent_playbooks_review_and_lifecycle(
    store: Store, sync_replica: Callable[[], None]
) -> None:
    ids = store.add_agent_playbooks(
        [
            {"playbook_name": "tone", "agent_version": "1", "content": "old", "status": "current"},
            {"playbook_name": "tone", "agent_version": "1", "content": "new"},
            {"playbook_name": "tone", "agent_version": "2", "content": "v2", "status": "current"},
            {"playbook_name": "other", "content": "o", "playbook_metadata": {"k": [1, 2]}},
        ]
    )
    sync_replica()
    first = store.get_agent_playbook(ids[3])
    assert first is not None
    assert first.playbook_status is PlaybookReviewStatus.PENDING
    assert first.playbook_metadata == {"k": [1, 2]}

    assert store.set_agent_playbook_review_status([ids[0], ids[1]], "approved") == 2
    with pytest.raises(ValidationError, match="playbook_status"):
        store.set_agent_playbook_review_status([ids[0]], "maybe")
    with pytest.raises(NotFoundError):
        store.set_agent_playbook_review_status([ids[2], 999_999], "rejected")
    sync_replica()
    approved = store.list_agent_playbooks(playbook_status="approved")
    assert [p.agent_playbook_id for p in approved] == [ids[1], ids[0]]
    # The failed call changed nothing, not even the existing id.
    assert store.get_agent_playbook(ids[2]).playbook_status is PlaybookReviewStatus.PENDING  # type: ignore[union-attr]
    assert store.count_agent_playbooks(playbook_name="tone", agent_version="1") == 2

    assert store.promote_pending_agent_playbooks("tone", "1") == memories.Promotion(1, 1)
    by_id = {a.agent_playbook_id: a for a in store.list_agent_playbooks(consistency="strong")}
    assert by_id[ids[0]].status is Status.ARCHIVED
    assert by_id[ids[1]].status is Status.CURRENT
    assert by_id[ids[2]].status is Status.CURRENT  # other agent_version untouched
    assert by_id[ids[3]].status is Status.PENDING
    assert store.restore_agent_playbooks([ids[0]]) == 1
    assert store.archive_agent_playbooks([ids[0], ids[1]]) == 2
    assert store.count_agent_playbooks(status="archived") == 2
    assert store.update_agent_playbook(ids[3], {"playbook_status": "rejected"}).playbook_status == (
        PlaybookReviewStatus.REJECTED
    )
    assert store.delete_agent_playbooks_by_playbook_name("tone", agent_version="2") == 1
    assert store.delete_agent_playbooks_by_status("archived") == 2
    assert store.delete_agent_playbooks([ids[3]]) == 1
    assert store.count_agent_playbooks() == 0


def test_agent_playbook_sources_link_and_cascade(store: Store, factory: SessionFactory) -> None:
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(3)]
    )
    agent, agent2 = store.add_agent_playbooks(
        [{"playbook_name": "tone", "content": "agg"}, {"playbook_name": "tone", "content": "b"}]
    )
    assert store.add_agent_playbook_sources(agent, users) == 3
    assert store.add_agent_playbook_sources(agent, [users[0]]) == 0  # already linked
    assert store.add_agent_playbook_sources(agent2, [users[0]]) == 1
    with pytest.raises(NotFoundError, match="user playbook"):
        store.add_agent_playbook_sources(agent2, [users[1], 987_654])
    with pytest.raises(NotFoundError, match="agent playbook"):
        store.add_agent_playbook_sources(987_654, [users[1]])
    sources = store.get_agent_playbook_sources(agent, consistency="strong")
    assert [s.user_playbook_id for s in sources] == users
    assert [
        s.user_playbook_id for s in store.get_agent_playbook_sources(agent2, consistency="strong")
    ] == [users[0]]

    store.delete_user_playbooks([users[0]])  # link rows of both agent playbooks go with it
    assert len(store.get_agent_playbook_sources(agent, consistency="strong")) == 2
    assert store.remove_agent_playbook_sources(agent, [users[1]]) == 1
    store.delete_agent_playbooks([agent])
    with factory.writer() as session:
        links = session.execute(select(func.count()).select_from(AgentPlaybookSource)).scalar()
        assert links == 0
    assert store.count_user_playbooks() == 2  # the user playbooks themselves stay


def test_concurrent_add_agent_playbook_sources_links_each_pair_once(
    store: Store, factory: SessionFactory
) -> None:
    # Concurrent calls with the same ids used to read "no links yet" and then all insert them:
    # on PostgreSQL every loser raised a raw IntegrityError (duplicate primary key).
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(4)]
    )
    (agent,) = store.add_agent_playbooks([{"playbook_name": "tone", "content": "agg"}])
    workers = 6
    barrier = threading.Barrier(workers)
    results: list[int] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def link(order: list[int]) -> None:
        try:
            barrier.wait(timeout=30)
            added = store.add_agent_playbook_sources(agent, order)
            with guard:
                results.append(added)
        except BaseException as exc:  # collected and asserted below
            with guard:
                errors.append(exc)

    threads = [
        threading.Thread(target=link, args=(users if n % 2 else users[::-1],))
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == workers
    assert sum(results) == len(users)
    assert store.add_agent_playbook_sources(agent, users) == 0
    with factory.writer() as session:
        rows = session.execute(
            select(AgentPlaybookSource.user_playbook_id, func.count())
            .where(AgentPlaybookSource.agent_playbook_id == agent)
            .group_by(AgentPlaybookSource.user_playbook_id)
        ).all()
    assert sorted(rows) == [(u, 1) for u in sorted(users)]


def test_add_agent_playbook_sources_counts_only_new_links(store: Store) -> None:
    users = store.add_user_playbooks(
        [{"user_id": f"u{i}", "playbook_name": "tone", "content": f"c{i}"} for i in range(3)]
    )
    (agent,) = store.add_agent_playbooks([{"playbook_name": "tone", "content": "agg"}])
    assert store.add_agent_playbook_sources(agent, [users[1]]) == 1
    # Duplicates in one call count once; the already-linked id counts zero.
    assert store.add_agent_playbook_sources(agent, [users[2], users[0], users[1], users[2]]) == 2
    sources = store.get_agent_playbook_sources(agent, consistency="strong")
    assert sorted(s.user_playbook_id for s in sources) == sorted(users)


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
            assert memories.promote_pending_profiles(holder, "u").promoted == 1
            # `holder` keeps its transaction (and the advisory lock) open from here on.
            with other.writer() as session:
                session.execute(text("SET LOCAL lock_timeout = '3s'"))
                assert memories.promote_pending_profiles(session, "u").promoted == 1
            same = SessionFactory.from_config(
                make_pg_config(pg, pg_schema), settings=StorageSettings()
            )
            try:
                with (
                    pytest.raises(OperationalError, match="lock timeout"),
                    same.writer() as session,
                ):
                    session.execute(text("SET LOCAL lock_timeout = '200ms'"))
                    memories.promote_pending_profiles(session, "u")
            finally:
                same.dispose()
    finally:
        other.dispose()
        engine = create_engine(pg.primary_url, poolclass=NullPool)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{other_schema}" CASCADE')
        engine.dispose()


def test_ids_are_checked_and_large_id_lists_work(store: Store) -> None:
    ids = store.add_profiles(
        [{"user_id": "u", "content": "a", "profile_id": None}, {"user_id": "u", "content": "b"}]
    )
    assert all(len(i) == 32 for i in ids)
    with pytest.raises(ValidationError, match="integers"):
        store.get_user_playbook("abc")  # type: ignore[arg-type]
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
