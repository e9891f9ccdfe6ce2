"""ReflexioStoreStorage: reflexio-ai's BaseStorage contract on Store, each mixin on an SQLite
file and on PostgreSQL (writes on the primary, searches through the replica)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

pytest.importorskip("reflexio", reason="needs the reflexio extra: pip install -e '.[test]'")

from reflexio.models.api_schema.domain import (
    AgentPlaybook,
    AgentPlaybookSnapshot,
    AgentPlaybookUpdateEntry,
    AgentSuccessEvaluationResult,
    BlockingIssue,
    BlockingIssueKind,
    DeleteUserInteractionRequest,
    DeleteUserProfileRequest,
    Interaction,
    PlaybookAggregationChangeLog,
    PlaybookStatus,
    ProfileChangeLog,
    Request,
    Status,
    StructuredData,
    ToolUsed,
    UserActionType,
    UserPlaybook,
    UserProfile,
)
from reflexio.models.api_schema.retriever_schema import (
    SearchAgentPlaybookRequest,
    SearchInteractionRequest,
    SearchUserPlaybookRequest,
    SearchUserProfileRequest,
)
from reflexio.models.config_schema import SearchMode, SearchOptions

from reflexio_store import ConfigurationError, SessionFactory, ValidationError
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.errors import ConflictError
from reflexio_store.integrations.reflexio import (
    ReflexioNotFoundError,
    ReflexioStoreStorage,
)

HASHER = HashingEmbedder()
NOW = int(time.time()) - 3600


def embed(texts: list[str]) -> list[list[float]]:
    return [list(map(float, v)) for v in HASHER.embed_many(texts)]


def vec(text: str) -> list[float]:
    return embed([text])[0]


@pytest.fixture
def rx(factory: SessionFactory, request: pytest.FixtureRequest) -> ReflexioStoreStorage:
    return ReflexioStoreStorage("org-1", factory=factory, embedder=embed)


def settle(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    """Searches read the replica: wait until it has replayed the writes."""
    if rx.factory.backend == "postgresql":
        request.getfixturevalue("pg").wait_for_replica()


def profile(pid: str, user: str, content: str, **kw: Any) -> UserProfile:
    base: dict[str, Any] = {
        "profile_id": pid,
        "user_id": user,
        "content": content,
        "last_modified_timestamp": NOW,
        "generated_from_request_id": "r1",
    }
    return UserProfile(**{**base, **kw})


# -- construction --------------------------------------------------------------------------


def test_is_a_reflexio_storage_with_every_method() -> None:
    from reflexio.server.services.storage.storage_base import BaseStorage

    abstract = [
        n for n in dir(BaseStorage) if getattr(getattr(BaseStorage, n), "__isabstractmethod__", 0)
    ]
    assert len(abstract) == 82
    assert issubclass(ReflexioStoreStorage, BaseStorage)
    assert not [
        n for n in abstract if getattr(getattr(ReflexioStoreStorage, n), "__isabstractmethod__", 0)
    ]


def test_without_embedder_on_python_311_says_what_to_pass(sqlite_factory: SessionFactory) -> None:
    import sys

    if sys.version_info >= (3, 14):
        pytest.skip("Reflexio's own embedding client imports on 3.14")
    with pytest.raises(ConfigurationError, match="embedder="):
        ReflexioStoreStorage("org-1", factory=sqlite_factory)


def test_bad_embedder_output_is_a_validation_error(sqlite_factory: SessionFactory) -> None:
    rx = ReflexioStoreStorage("o", factory=sqlite_factory, embedder=lambda texts: [[0.1] * 512])
    with pytest.raises(ValidationError, match="one vector"):
        rx.add_user_profile("u", [profile("a", "u", "x"), profile("b", "u", "y")])
    assert rx.count_all_profiles() == 0


def test_migrate_and_check(rx: ReflexioStoreStorage) -> None:
    assert rx.migrate() is True
    assert rx.check_migration_needed() is False


def test_migration_needed_on_an_empty_sqlite_file(tmp_path: Any) -> None:
    from reflexio_store import StorageConfigSQLite

    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'fresh.db'}")
    rx = ReflexioStoreStorage("o", config=config, embedder=embed)
    assert rx.check_migration_needed() is True
    rx.migrate()
    assert rx.check_migration_needed() is False
    rx.factory.dispose()


def test_importing_the_adapter_leaves_logging_alone() -> None:
    """reflexio-ai's server package configures the root logger on import; the adapter's
    import undoes that (checked in a fresh interpreter, where nothing was imported yet)."""
    import subprocess
    import sys

    code = (
        "import logging; root = logging.getLogger(); before = (root.level, len(root.handlers));"
        "import reflexio_store.integrations.reflexio;"
        "assert (root.level, len(root.handlers)) == before, (root.level, root.handlers)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# -- ProfileMixin --------------------------------------------------------------------------


def test_profiles(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    rx.add_user_profile(
        "u1",
        [
            profile("p1", "u1", "prefers dark mode", custom_features={"k": "v"}),
            profile(
                "p2", "u1", "likes tea", status=Status.PENDING, last_modified_timestamp=NOW + 5
            ),
            profile("p3", "u1", "expired fact", expiration_timestamp=NOW - 10),
            profile("p4", "u2", "uses vim", extractor_names=["facts"], source="chat"),
        ],
    )
    assert [p.profile_id for p in rx.get_user_profile("u1")] == ["p1"]
    assert {p.profile_id for p in rx.get_user_profile("u1", [None, Status.PENDING])} == {"p1", "p2"}
    got = rx.get_user_profile("u2")[0]
    assert (got.extractor_names, got.source, got.status) == (["facts"], "chat", None)
    assert got.last_modified_timestamp == NOW and got.embedding == []
    assert rx.get_all_profiles(status_filter=[Status.PENDING])[0].profile_id == "p2"
    assert [p.profile_id for p in rx.get_all_profiles(limit=2, status_filter=[])] == ["p2", "p1"]
    assert rx.count_all_profiles() == 4

    # Replacing by profile_id (Reflexio's INSERT OR REPLACE).
    rx.add_user_profile("u1", [profile("p1", "u1", "prefers light mode")])
    assert rx.count_all_profiles() == 4
    assert rx.get_user_profile("u1")[0].content == "prefers light mode"
    rx.update_user_profile_by_id("u1", "p1", profile("p1", "u1", "prefers blue themes"))
    rx.update_user_profile_by_id("u1", "missing", profile("x", "u1", "nothing"))  # no-op
    assert rx.get_user_profile("u1")[0].content == "prefers blue themes"

    assert rx.get_user_ids_with_status(None) == ["u1", "u2"]
    assert rx.update_all_profiles_status(None, Status.ARCHIVED, user_ids=["u2"]) == 1
    assert rx.update_all_profiles_status(None, Status.ARCHIVED, user_ids=[]) == 0
    assert rx.get_user_ids_with_status(Status.ARCHIVED) == ["u2"]
    assert rx.delete_all_profiles_by_status(Status.ARCHIVED) == 1
    rx.delete_user_profile(DeleteUserProfileRequest(user_id="u1", profile_id="p2"))
    assert rx.delete_profiles_by_ids(["p3", "nope"]) == 1
    assert rx.delete_profiles_by_ids([]) == 0
    rx.delete_all_profiles_for_user("u1")
    assert rx.count_all_profiles() == 0
    rx.add_user_profile("u3", [profile("p9", "u3", "x")])
    rx.delete_all_profiles()
    assert rx.count_all_profiles() == 0


def test_profile_search(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    rx.add_user_profile(
        "u1",
        [
            profile("p1", "u1", "prefers dark mode in the editor"),
            profile("p2", "u1", "drinks green tea every morning", source="Chat"),
            profile("p3", "u1", "dark chocolate lover", status=Status.PENDING),
            profile("p4", "u2", "prefers dark mode too"),
        ],
    )
    settle(rx, request)
    hits = rx.search_user_profile(
        SearchUserProfileRequest(user_id="u1", query="dark mode"), query_embedding=vec("dark mode")
    )
    assert hits[0].profile_id == "p1" and {h.user_id for h in hits} == {"u1"}
    assert "p3" not in {h.profile_id for h in hits}  # pending is not current
    pending = rx.search_user_profile(
        SearchUserProfileRequest(user_id="u1", query="chocolate", search_mode=SearchMode.FTS),
        status_filter=[Status.PENDING],
    )
    assert [p.profile_id for p in pending] == ["p3"]
    vector = rx.search_user_profile(
        SearchUserProfileRequest(user_id="u1", search_mode=SearchMode.VECTOR, threshold=0.3),
        query_embedding=vec("green tea"),
    )
    assert vector[0].profile_id == "p2"
    by_source = rx.search_user_profile(
        SearchUserProfileRequest(user_id="u1", query="tea", source="chat")
    )
    assert [p.profile_id for p in by_source] == ["p2"]  # source compared case-insensitively
    assert (
        rx.search_user_profile(SearchUserProfileRequest(user_id="u1", query="tea", source="x"))
        == []
    )
    listed = rx.search_user_profile(SearchUserProfileRequest(user_id="u1", top_k=1))
    assert len(listed) == 1


def test_interactions(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    rx.add_request(Request(request_id="r1", user_id="u1", created_at=NOW, session_id="s1"))
    items = [
        Interaction(user_id="u1", request_id="r1", content="I love dark mode", created_at=NOW),
        Interaction(
            user_id="u1",
            request_id="r1",
            content="open settings",
            created_at=NOW + 1,
            user_action=UserActionType.CLICK,
            tools_used=[ToolUsed(tool_name="search", tool_data={"q": "x"})],
        ),
    ]
    rx.add_user_interactions_bulk("u1", items)
    assert [i.interaction_id for i in items] == sorted(i.interaction_id for i in items)
    assert all(i.interaction_id > 0 and len(i.embedding) == 512 for i in items)
    # An interaction whose request was never added creates that request (foreign key).
    rx.add_user_interaction("u2", Interaction(user_id="u2", request_id="r2", content="hi vim"))
    assert rx.get_request("r2") is not None
    got = rx.get_user_interaction("u1")
    assert [i.content for i in got] == ["I love dark mode", "open settings"]
    assert got[1].tools_used[0].tool_data == {"q": "x"} and got[1].user_action == "click"
    assert rx.get_all_interactions(limit=1)[0].user_id == "u2"
    assert rx.count_all_interactions() == 3
    # Replacing by explicit interaction_id, then a new one still gets a fresh id.
    first = got[0].interaction_id
    rx.add_user_interaction(
        "u1",
        Interaction(
            interaction_id=first, user_id="u1", request_id="r1", content="edited", created_at=NOW
        ),
    )
    assert rx.count_all_interactions() == 3
    extra = Interaction(user_id="u1", request_id="r1", content="later", created_at=NOW + 2)
    rx.add_user_interaction("u1", extra)
    assert extra.interaction_id > max(i.interaction_id for i in got)

    settle(rx, request)
    hits = rx.search_interaction(SearchInteractionRequest(user_id="u1", query="settings"))
    assert [h.content for h in hits] == ["open settings"]
    recent = rx.search_interaction(SearchInteractionRequest(user_id="u1", most_recent_k=2))
    assert [h.content for h in recent] == ["open settings", "later"]  # chronological
    assert rx.search_interaction(SearchInteractionRequest(user_id="u1")) == []

    rx.delete_user_interaction(DeleteUserInteractionRequest(user_id="u1", interaction_id=first))
    assert rx.delete_oldest_interactions(1) == 1
    assert rx.delete_oldest_interactions(0) == 0
    rx.delete_all_interactions_for_user("u2")
    assert [i.content for i in rx.get_user_interaction("u1")] == ["later"]
    rx.delete_all_interactions()
    assert rx.count_all_interactions() == 0


# -- RequestMixin --------------------------------------------------------------------------


def test_requests_and_sessions(rx: ReflexioStoreStorage) -> None:
    for n, (rid, sid, src) in enumerate(
        [("r1", "s1", "web"), ("r2", "s1", "web"), ("r3", None, "api"), ("r4", "s2", "web")]
    ):
        rx.add_request(
            Request(
                request_id=rid,
                user_id="u1" if n < 3 else "u2",
                created_at=NOW + n,
                session_id=sid,
                source=src,
                agent_version="v1",
            )
        )
        rx.add_user_interaction(
            "u",
            Interaction(
                user_id="u1" if n < 3 else "u2", request_id=rid, content=f"m{n}", created_at=NOW + n
            ),
        )
    # add_request replaces the request and keeps its interactions.
    rx.add_request(
        Request(
            request_id="r1",
            user_id="u1",
            created_at=NOW,
            session_id="s1",
            source="mobile",
            agent_version="v1",
        )
    )
    assert rx.get_request("r1") == Request(
        request_id="r1",
        user_id="u1",
        created_at=NOW,
        session_id="s1",
        source="mobile",
        agent_version="v1",
    )
    assert rx.get_request("nope") is None
    sessions = rx.get_sessions(user_id="u1")
    assert list(sessions) == ["", "s1"]
    assert [g.request.request_id for g in sessions["s1"]] == ["r2", "r1"]
    assert [i.content for i in sessions["s1"][1].interactions] == ["m0"]
    assert list(rx.get_sessions(top_k=1, offset=1)) == [""]
    assert list(rx.get_sessions(start_time=NOW + 3)) == ["s2"]
    assert rx.get_rerun_user_ids() == ["u1", "u2"]
    assert rx.get_rerun_user_ids(source="api") == ["u1"]
    assert [r.request_id for r in rx.get_requests_by_session("u1", "s1")] == ["r1", "r2"]
    assert [i.content for i in rx.get_interactions_by_request_ids(["r2", "r1"])] == ["m0", "m1"]
    assert rx.delete_session("s1") == 2
    assert rx.get_interactions_by_request_ids(["r1", "r2"]) == []
    assert rx.delete_requests_by_ids(["r3", "zz"]) == 1
    rx.delete_request("r4")
    assert rx.count_all_interactions() == 0
    rx.add_request(Request(request_id="r5", user_id="u1"))
    rx.delete_all_requests()
    assert rx.get_request("r5") is None


# -- PlaybookMixin -------------------------------------------------------------------------


def user_playbook(content: str, **kw: Any) -> UserPlaybook:
    base: dict[str, Any] = {
        "agent_version": "v1",
        "request_id": "r1",
        "playbook_name": "pb",
        "user_id": "u1",
        "created_at": NOW,
    }
    return UserPlaybook(**{**base, "content": content, **kw})


def test_user_playbooks(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    data = StructuredData(
        trigger="user asks for a long answer",
        instruction="answer in three lines",
        pitfall="rambling",
        blocking_issue=BlockingIssue(kind=BlockingIssueKind.MISSING_TOOL, details="no search"),
        extra_key="kept",
    )
    items = [
        user_playbook("be brief", structured_data=data),
        user_playbook("cite sources", status=Status.PENDING, created_at=NOW + 1),
        user_playbook(
            "use metric units",
            playbook_name="units",
            agent_version="v2",
            created_at=NOW + 2,
            source_interaction_ids=[3, 4],
        ),
    ]
    rx.save_user_playbooks(items)
    ids = [i.user_playbook_id for i in items]
    assert ids == sorted(ids) and ids[0] > 0
    got = rx.get_user_playbooks(include_embedding=True)
    assert [p.content for p in got] == ["use metric units", "cite sources", "be brief"]
    assert got[2].structured_data == data and len(got[2].embedding) == 512
    assert got[0].source_interaction_ids == [3, 4]
    assert rx.get_user_playbooks(status_filter=[None], agent_version="v1")[0].content == "be brief"
    assert len(rx.get_user_playbooks(start_time=NOW + 1, end_time=NOW + 1)) == 1
    assert rx.count_user_playbooks() == 3
    assert rx.count_user_playbooks(min_user_playbook_id=ids[0], status_filter=[None]) == 1
    rx.add_request(Request(request_id="r1", user_id="u1", session_id="s1"))
    assert rx.count_user_playbooks_by_session("s1") == 3
    assert rx.has_user_playbooks_with_status(Status.PENDING, playbook_name="pb")
    assert not rx.has_user_playbooks_with_status(Status.ARCHIVED)

    rx.update_user_playbook(ids[0], content="be very brief")
    with pytest.raises(ReflexioNotFoundError):
        rx.update_user_playbook(10**9, content="x")
    assert rx.update_all_user_playbooks_status(None, Status.ARCHIVED, agent_version="v1") == 1
    assert rx.update_all_user_playbooks_status(Status.PENDING, None) == 1

    settle(rx, request)
    hits = rx.search_user_playbooks(SearchUserPlaybookRequest(query="long answer"))
    assert [h.content for h in hits] == ["be very brief"]  # trigger is searched; any status
    current = rx.search_user_playbooks(
        SearchUserPlaybookRequest(query="sources metric brief", status_filter=[None]),
        SearchOptions(query_embedding=vec("cite sources")),
    )
    assert {h.content for h in current} <= {"cite sources", "use metric units"}
    assert current[0].content == "cite sources"
    listed = rx.search_user_playbooks(SearchUserPlaybookRequest(playbook_name="units"))
    assert [h.content for h in listed] == ["use metric units"]

    assert rx.delete_all_user_playbooks_by_status(Status.ARCHIVED) == 1
    rx.delete_user_playbook(ids[1])
    rx.delete_all_user_playbooks_by_playbook_name("units", agent_version="v9")
    assert rx.count_user_playbooks() == 1
    rx.delete_all_user_playbooks_by_playbook_name("units")
    assert rx.delete_user_playbooks_by_ids([]) == 0
    rx.save_user_playbooks([user_playbook("x")])
    rx.delete_all_user_playbooks()
    assert rx.count_user_playbooks() == 0


def test_agent_playbooks(rx: ReflexioStoreStorage, request: pytest.FixtureRequest) -> None:
    saved = rx.save_agent_playbooks(
        [
            AgentPlaybook(
                agent_version="v1",
                playbook_name="pb",
                content="greet by name",
                playbook_metadata="from 3 users",
                created_at=NOW,
            ),
            AgentPlaybook(
                agent_version="v1",
                playbook_name="pb",
                content="confirm before paying",
                playbook_status=PlaybookStatus.APPROVED,
                created_at=NOW + 1,
                structured_data=StructuredData(trigger="payment"),
            ),
            AgentPlaybook(
                agent_version="v2",
                playbook_name="other",
                content="short replies",
                created_at=NOW + 2,
            ),
        ]
    )
    a, b, other = (p.agent_playbook_id for p in saved)
    assert 0 < a < b < other
    got = rx.get_agent_playbooks()
    assert [p.content for p in got] == ["short replies", "confirm before paying", "greet by name"]
    assert got[2].playbook_metadata == "from 3 users"
    approved = rx.get_agent_playbooks(playbook_status_filter=[PlaybookStatus.APPROVED])
    assert [p.agent_playbook_id for p in approved] == [b]

    rx.archive_agent_playbooks_by_playbook_name("pb")  # the approved one stays
    assert {
        p.agent_playbook_id for p in rx.get_agent_playbooks(status_filter=[Status.ARCHIVED])
    } == {a}
    rx.restore_archived_agent_playbooks_by_ids([a])
    rx.archive_agent_playbooks_by_ids([a, b])
    rx.archive_agent_playbooks_by_ids([])
    rx.restore_archived_agent_playbooks_by_playbook_name("pb", agent_version="v1")
    assert len(rx.get_agent_playbooks(playbook_name="pb")) == 2
    rx.update_agent_playbook_status(a, PlaybookStatus.REJECTED)
    rx.update_agent_playbook(
        a, content="greet warmly", structured_data=StructuredData(rationale="users said so")
    )
    updated = rx.get_agent_playbooks(playbook_status_filter=[PlaybookStatus.REJECTED])[0]
    assert (updated.content, updated.structured_data.rationale) == ("greet warmly", "users said so")
    with pytest.raises(ReflexioNotFoundError):
        rx.update_agent_playbook_status(10**9, PlaybookStatus.APPROVED)

    settle(rx, request)
    hits = rx.search_agent_playbooks(SearchAgentPlaybookRequest(query="payment"))
    assert [h.agent_playbook_id for h in hits] == [b]
    hits = rx.search_agent_playbooks(
        SearchAgentPlaybookRequest(query="greet", playbook_status_filter=PlaybookStatus.APPROVED)
    )
    assert hits == []
    vector = rx.search_agent_playbooks(
        SearchAgentPlaybookRequest(search_mode=SearchMode.VECTOR, threshold=0.2),
        SearchOptions(query_embedding=vec("short replies")),
    )
    assert vector[0].agent_playbook_id == other

    rx.archive_agent_playbooks_by_ids([a])
    rx.delete_archived_agent_playbooks_by_playbook_name("pb")
    assert [p.agent_playbook_id for p in rx.get_agent_playbooks(playbook_name="pb")] == [b]
    rx.delete_agent_playbook(b)
    rx.delete_all_agent_playbooks_by_playbook_name("other", agent_version="v2")
    assert rx.get_agent_playbooks(status_filter=[]) == []
    rx.save_agent_playbooks([AgentPlaybook(agent_version="v1", content="x")])
    rx.delete_agent_playbooks_by_ids([])
    rx.delete_all_agent_playbooks()
    assert rx.get_agent_playbooks(status_filter=[]) == []


def test_evaluation_results(rx: ReflexioStoreStorage) -> None:
    results = [
        AgentSuccessEvaluationResult(
            agent_version="v1",
            session_id="s1",
            is_success=True,
            evaluation_name="e",
            created_at=NOW,
        ),
        AgentSuccessEvaluationResult(
            agent_version="v2",
            session_id="s2",
            is_success=False,
            failure_type="wrong tool",
            failure_reason="used search",
            created_at=NOW + 1,
            is_escalated=True,
        ),
    ]
    rx.save_agent_success_evaluation_results(results)
    got = rx.get_agent_success_evaluation_results()
    assert [(r.session_id, r.evaluation_name, r.is_success) for r in got] == [
        ("s2", None, False),
        ("s1", "e", True),
    ]
    assert got[0].is_escalated and got[0].created_at == NOW + 1
    assert [r.session_id for r in rx.get_agent_success_evaluation_results(agent_version="v1")] == [
        "s1"
    ]
    # Saving the same (session, evaluation name) again updates it (the store's contract).
    rx.save_agent_success_evaluation_results(
        [
            AgentSuccessEvaluationResult(
                agent_version="v1",
                session_id="s1",
                is_success=False,
                evaluation_name="e",
                created_at=NOW,
            )
        ]
    )
    assert len(rx.get_agent_success_evaluation_results()) == 2
    assert not rx.get_agent_success_evaluation_results(agent_version="v1")[0].is_success
    rx.delete_all_agent_success_evaluation_results()
    assert rx.get_agent_success_evaluation_results() == []


# -- OperationMixin ------------------------------------------------------------------------


def test_operation_state(rx: ReflexioStoreStorage) -> None:
    rx.create_operation_state("svc", {"a": 1})
    with pytest.raises(ConflictError):
        rx.create_operation_state("svc", {"a": 2})
    record = rx.get_operation_state("svc")
    assert record is not None and record["operation_state"] == {"a": 1}
    assert datetime.fromisoformat(record["updated_at"]).tzinfo is not None
    rx.update_operation_state("svc", {"a": 3})
    rx.update_operation_state("missing", {"a": 3})  # no-op, as in Reflexio
    rx.upsert_operation_state("svc2", {"b": [1, 2]})
    rx.upsert_operation_state("svc2", {"b": [3]})
    assert [(s["service_name"], s["operation_state"]) for s in rx.get_all_operation_states()] == [
        ("svc", {"a": 3}),
        ("svc2", {"b": [3]}),
    ]
    with pytest.raises(ValidationError):
        rx.upsert_operation_state("bad", {"x": float("nan")})
    rx.delete_operation_state("svc")
    assert rx.get_operation_state("svc") is None
    rx.delete_all_operation_states()
    assert rx.get_all_operation_states() == []


def test_new_interactions_since_the_operation_state(rx: ReflexioStoreStorage) -> None:
    for n, (rid, src) in enumerate([("r1", "web"), ("r2", "api"), ("r3", "web")]):
        rx.add_request(
            Request(
                request_id=rid,
                user_id="u1",
                created_at=NOW + n,
                source=src,
                session_id="s1" if n < 2 else None,
                agent_version=f"v{n}",
            )
        )
        rx.add_user_interactions_bulk(
            "u1",
            [
                Interaction(
                    user_id="u1", request_id=rid, content=f"{rid}-a", created_at=NOW + 10 * n
                ),
                Interaction(
                    user_id="u1", request_id=rid, content=f"{rid}-b", created_at=NOW + 10 * n + 1
                ),
            ],
        )
    state, groups = rx.get_operation_state_with_new_request_interaction("svc", "u1")
    assert state == {} and [g.request.request_id for g in groups] == ["r1", "r2", "r3"]
    assert [g.session_id for g in groups] == ["s1", "s1", "r3"]
    first_ids = [i.interaction_id for i in groups[0].interactions]
    rx.upsert_operation_state(
        "svc", {"last_processed_interaction_ids": first_ids, "last_processed_timestamp": NOW}
    )
    state, groups = rx.get_operation_state_with_new_request_interaction("svc", "u1", ["web"])
    assert state["last_processed_timestamp"] == NOW
    assert [g.request.request_id for g in groups] == ["r3"]

    groups, flat = rx.get_last_k_interactions_grouped("u1", 3)
    assert [i.content for i in flat] == ["r3-b", "r3-a", "r2-b"]
    assert [g.request.request_id for g in groups] == ["r2", "r3"]
    assert [i.content for i in groups[1].interactions] == ["r3-a", "r3-b"]
    _, flat = rx.get_last_k_interactions_grouped(None, 10, sources=["api"], agent_version="v1")
    assert [i.content for i in flat] == ["r2-b", "r2-a"]
    _, flat = rx.get_last_k_interactions_grouped("u1", 10, start_time=NOW + 10, end_time=NOW + 11)
    assert len(flat) == 2


def test_in_progress_lock(rx: ReflexioStoreStorage) -> None:
    first = rx.try_acquire_in_progress_lock("lock", "req-a")
    assert first == {
        "acquired": True,
        "state": {
            "status": "in_progress",
            "current_request_id": "req-a",
            "pending_request_id": None,
        },
    }
    blocked = rx.try_acquire_in_progress_lock("lock", "req-b")
    assert not blocked["acquired"] and blocked["state"]["pending_request_id"] == "req-b"
    rx.upsert_operation_state("lock", {"status": "completed"})
    assert rx.try_acquire_in_progress_lock("lock", "req-c")["acquired"]
    # A lock older than stale_lock_seconds is taken over.
    assert rx.try_acquire_in_progress_lock("lock", "req-d", stale_lock_seconds=-1)["acquired"]


def test_in_progress_lock_has_one_winner_under_contention(rx: ReflexioStoreStorage) -> None:
    results: list[bool] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def attempt(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            results.append(rx.try_acquire_in_progress_lock("contended", f"req-{n}")["acquired"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and sorted(results) == [False] * 5 + [True]


# -- ExtrasMixin ---------------------------------------------------------------------------


def test_change_logs(rx: ReflexioStoreStorage) -> None:
    p = profile("p1", "u1", "likes tea", custom_features={"a": 1})
    rx.add_profile_change_log(
        ProfileChangeLog(
            id=0,
            user_id="u1",
            request_id="r1",
            created_at=NOW,
            added_profiles=[p],
            removed_profiles=[],
            mentioned_profiles=[p],
        )
    )
    rx.add_profile_change_log(
        ProfileChangeLog(
            id=0,
            user_id="u2",
            request_id="r2",
            created_at=NOW + 1,
            added_profiles=[],
            removed_profiles=[p],
            mentioned_profiles=[],
        )
    )
    logs = rx.get_profile_change_logs()
    assert [log.user_id for log in logs] == ["u2", "u1"]
    assert logs[1].added_profiles == [p] and logs[1].created_at == NOW
    rx.delete_profile_change_log_for_user("u2")
    assert [log.user_id for log in rx.get_profile_change_logs(limit=5)] == ["u1"]
    rx.delete_all_profile_change_logs()
    assert rx.get_profile_change_logs() == []

    def snap(pid: int, content: str) -> AgentPlaybookSnapshot:
        return AgentPlaybookSnapshot(
            agent_playbook_id=pid, playbook_name="pb", agent_version="v1", content=content
        )

    log = PlaybookAggregationChangeLog(
        playbook_name="pb",
        agent_version="v1",
        run_mode="full_archive",
        created_at=NOW,
        added_agent_playbooks=[snap(3, "new")],
        removed_agent_playbooks=[snap(1, "old")],
        updated_agent_playbooks=[AgentPlaybookUpdateEntry(before=snap(2, "b"), after=snap(2, "a"))],
    )
    rx.add_playbook_aggregation_change_log(log)
    stored = rx.get_playbook_aggregation_change_logs("pb", "v1")
    assert len(stored) == 1 and stored[0].model_dump(exclude={"id"}) == log.model_dump(
        exclude={"id"}
    )
    assert rx.get_playbook_aggregation_change_logs("pb", "v2") == []
    rx.delete_all_playbook_aggregation_change_logs()
    assert rx.get_playbook_aggregation_change_logs("pb", "v1") == []


def test_dashboard_and_profile_statistics(rx: ReflexioStoreStorage) -> None:
    now = int(time.time())
    old = now - 40 * 86400
    rx.add_request(Request(request_id="r1", user_id="u1", created_at=now))
    rx.add_user_interactions_bulk(
        "u1",
        [
            Interaction(user_id="u1", request_id="r1", content="a", created_at=now - 10),
            Interaction(user_id="u1", request_id="r1", content="b", created_at=old),
        ],
    )
    rx.add_user_profile(
        "u1",
        [
            profile(
                "p1", "u1", "x", last_modified_timestamp=now - 5, expiration_timestamp=now + 86400
            ),
            profile("p2", "u1", "y", status=Status.PENDING, last_modified_timestamp=old),
            profile("p3", "u1", "z", status=Status.ARCHIVED),
        ],
    )
    rx.save_user_playbooks([user_playbook("c", created_at=now - 3)])
    rx.save_agent_success_evaluation_results(
        [
            AgentSuccessEvaluationResult(
                agent_version="v", session_id="s", is_success=True, created_at=now - 2
            ),
            AgentSuccessEvaluationResult(
                agent_version="v",
                session_id="t",
                is_success=False,
                evaluation_name="e",
                created_at=now - 1,
            ),
        ]
    )
    stats = rx.get_dashboard_stats(days_back=30)
    assert stats["current_period"] == {
        "total_interactions": 1,
        "total_profiles": 2,
        "total_playbooks": 1,
        "success_rate": 50.0,
    }
    assert stats["previous_period"]["total_interactions"] == 1
    assert stats["previous_period"]["total_profiles"] == 1
    assert stats["interactions_time_series"] == [{"timestamp": now - 10, "value": 1}]
    assert [e["value"] for e in stats["evaluations_time_series"]] == [100, 0]
    assert rx.get_profile_statistics() == {
        "current_count": 1,
        "pending_count": 1,
        "archived_count": 1,
        "expiring_soon_count": 1,
    }


def test_bad_input_is_refused_before_writing(rx: ReflexioStoreStorage) -> None:
    with pytest.raises(ValidationError):
        rx.add_user_profile("u1", [profile("ok", "u1", "fine"), profile("bad", "u1", "nul\x00")])
    assert rx.count_all_profiles() == 0
    with pytest.raises(ValidationError):
        rx.add_request(Request(request_id="r", user_id="u", created_at=10**20))


_unused: Callable[..., Any] = timedelta  # keep imports honest across both databases
_unused2: Any = UTC
