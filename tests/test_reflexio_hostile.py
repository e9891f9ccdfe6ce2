"""The Reflexio backend and the transfer commands under the inputs a fuzzing run found harmful:
each gets one of our errors, and nothing is half-written or written to the wrong rows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytest.importorskip("reflexio", reason="needs the reflexio extra: pip install -e '.[test]'")

from reflexio.models.api_schema.domain import Interaction, UserProfile

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.integrations.reflexio import ReflexioStoreStorage
from reflexio_store.integrations.reflexio._profiles import MAX_EXPLICIT_ID
from tests.test_reflexio_adapter import NOW, embed


@pytest.fixture
def rx(factory: SessionFactory) -> ReflexioStoreStorage:
    return ReflexioStoreStorage("org-1", factory=factory, embedder=embed)


def _interaction(user: str, request: str, content: str, **kw: object) -> Interaction:
    return Interaction(user_id=user, request_id=request, content=content, created_at=NOW, **kw)


def test_a_rolled_back_insert_leaves_no_id_on_the_items(rx: ReflexioStoreStorage) -> None:
    """Ids are set on the caller's items only after the commit: a retried item whose id had
    been handed out again (SQLite reuses a rolled-back id) would replace another user's row."""
    from reflexio_store.integrations.reflexio._profiles import insert_interactions

    alice = _interaction("u1", "r1", "alice private")
    with pytest.raises(RuntimeError, match="rolled back"), rx.factory.writer() as session:
        assigned = insert_interactions(session, [alice], embed(["alice private"]))
        assert assigned and assigned[0][1] > 0
        raise RuntimeError("rolled back")
    assert not alice.interaction_id
    rx.add_user_interaction("bob", _interaction("bob", "rb", "bob's own"))
    rx.add_user_interactions_bulk("u1", [alice])  # the retry
    assert [i.content for i in rx.get_user_interaction("bob")] == ["bob's own"]
    assert [i.content for i in rx.get_user_interaction("u1")] == ["alice private"]
    assert alice.interaction_id  # set once committed


@pytest.mark.parametrize("given", [2**63 - 1, MAX_EXPLICIT_ID + 1, -5])
def test_explicit_interaction_ids_keep_room_for_generated_ones(
    rx: ReflexioStoreStorage, given: int
) -> None:
    with pytest.raises(ValidationError, match="interaction_id"):
        rx.add_user_interaction("u1", _interaction("u1", "r1", "x", interaction_id=given))
    rx.add_user_interaction("u1", _interaction("u1", "r2", "still writable"))
    assert [i.content for i in rx.get_user_interaction("u1")] == ["still writable"]


def test_a_str_where_a_list_of_ids_is_expected_is_refused(rx: ReflexioStoreStorage) -> None:
    """ "ab" is not the users "a" and "b": refused, and nobody's profiles change."""
    for user in ("a", "b", "ab"):
        rx.add_user_profile(
            user,
            [UserProfile(profile_id=f"p-{user}", user_id=user, content="x",
                         last_modified_timestamp=NOW, generated_from_request_id="r")],
        )  # fmt: skip
    with pytest.raises(ValidationError, match="user_ids must be a list"):
        rx.update_all_profiles_status(None, None, user_ids="ab")  # type: ignore[arg-type]
    for call in (
        lambda: rx.delete_profiles_by_ids("p-a"),  # type: ignore[arg-type]
        lambda: rx.delete_requests_by_ids("r1"),  # type: ignore[arg-type]
        lambda: rx.get_interactions_by_request_ids("r1"),  # type: ignore[arg-type]
        lambda: rx.delete_user_playbooks_by_ids("12"),  # type: ignore[arg-type]
        lambda: rx.delete_agent_playbooks_by_ids("12"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValidationError, match="must be a list"):
            call()
    assert sorted(p.user_id for p in rx.get_all_profiles(10)) == ["a", "ab", "b"]
    assert rx.delete_profiles_by_ids([]) == 0


def test_copy_never_creates_or_migrates_its_source(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    unrelated = tmp_path / "unrelated.db"
    sqlite3.connect(unrelated).execute("CREATE TABLE x (a)").connection.close()
    for source, problem in ((missing, "no SQLite file"), (unrelated, "reflexio_store")):
        result = subprocess.run(
            [sys.executable, "-m", "reflexio_store.cli", "copy", "--from", f"sqlite:///{source}",
             "--to", f"sqlite:///{tmp_path / 'target.db'}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0, result.stdout
        assert problem in result.stderr, result.stderr
    assert not missing.exists()
    with sqlite3.connect(unrelated) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["x"]


# -- every method checks its arguments against its signature -------------------------------

HOSTILE = [
    None, 5, -1, 2**63, 2**64, 1.5, float("nan"), True, "", "x\x00y", "\ud800", "a" * 3000,
    "current", "bogus", b"bytes", ["a"], [1], [None], {"a": 1}, (), object(),
]  # fmt: skip

CALLS: list[tuple[str, str, dict[str, object]]] = [
    ("get_user_interaction", "user_id", {}),
    ("get_all_profiles", "limit", {}),
    ("get_all_profiles", "status_filter", {}),
    ("get_sessions", "user_id", {}),
    ("get_sessions", "top_k", {}),
    ("get_sessions", "offset", {}),
    ("get_user_ids_with_status", "status", {}),
    ("count_user_playbooks", "min_user_playbook_id", {}),
    ("count_user_playbooks", "status_filter", {}),
    ("get_last_k_interactions_grouped", "k", {"user_id": "u1"}),
    ("get_last_k_interactions_grouped", "sources", {"user_id": "u1", "k": 3}),
    ("get_dashboard_stats", "days_back", {}),
    ("delete_user_playbook", "user_playbook_id", {}),
    ("get_agent_playbooks", "playbook_status_filter", {}),
    ("try_acquire_in_progress_lock", "stale_lock_seconds", {"state_key": "k", "request_id": "r"}),
    ("delete_oldest_interactions", "count", {}),
    ("add_request", "request", {}),
    ("search_user_profile", "search_user_profile_request", {}),
]


@pytest.mark.parametrize(("method", "parameter", "others"), CALLS)
def test_hostile_arguments_get_our_errors_on_both_databases(
    rx: ReflexioStoreStorage, method: str, parameter: str, others: dict[str, object]
) -> None:
    """Every hostile value either works or is a ValidationError naming the parameter: never a
    raw TypeError, OverflowError or driver error, and the same on SQLite and PostgreSQL."""
    from reflexio_store.errors import ReflexioStoreError

    outcomes = []
    for value in HOSTILE:
        try:
            getattr(rx, method)(**others, **{parameter: value})
            outcomes.append("ok")
        except ValidationError as exc:
            assert parameter in str(exc) or method in str(exc), str(exc)
            outcomes.append("refused")
        except ReflexioStoreError as exc:  # e.g. NotFoundError for an id that is not there
            outcomes.append(type(exc).__name__)
    assert "refused" in outcomes


@pytest.mark.parametrize("value", ["current", "bogus", 5])
def test_a_status_that_is_not_one_is_refused(rx: ReflexioStoreStorage, value: object) -> None:
    with pytest.raises(ValidationError, match="status"):
        rx.get_all_profiles(10, status_filter=[value])  # type: ignore[list-item]


def test_every_public_method_checks_its_arguments() -> None:
    import inspect

    unchecked = [
        name
        for name, fn in inspect.getmembers(ReflexioStoreStorage, inspect.isfunction)
        if not name.startswith("_")
        and len(inspect.signature(fn).parameters) > 1
        and not getattr(fn, "__reflexio_checked__", False)
    ]
    assert unchecked == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("profile_id", "k" * 3000),
        ("user_id", "u" * 3000),
        ("source", "s" * 3000),
        ("content", " ".join(f"w{i}" for i in range(200_000))),
        ("profile_id", "p\x00"),
    ],
)
def test_model_fields_beyond_what_both_databases_store_are_refused(
    rx: ReflexioStoreStorage, field: str, value: str
) -> None:
    """A key PostgreSQL's btree cannot index (over 2,704 bytes) or a text too large for its
    tsvector used to be stored by SQLite and refused raw by PostgreSQL: refused on both now."""
    values = {
        "profile_id": "p1", "user_id": "u1", "content": "likes tea", "source": "chat",
        "last_modified_timestamp": NOW, "generated_from_request_id": "r1", field: value,
    }  # fmt: skip
    with pytest.raises(ValidationError, match=field):
        rx.add_user_profile("u1", [UserProfile(**values)])
    assert rx.get_all_profiles(10) == []


def test_a_source_filter_folds_case_the_same_on_both_databases(rx: ReflexioStoreStorage) -> None:
    """SQLite's lower() folds ASCII only: "CAFÉ" must match "café" on both databases, in list
    mode (no query) as in the search modes."""
    from reflexio.models.api_schema.retriever_schema import SearchUserProfileRequest

    rx.add_user_profile(
        "u1",
        [UserProfile(profile_id="p1", user_id="u1", content="likes tea", source="CAFÉ",
                     last_modified_timestamp=NOW, generated_from_request_id="r1")],
    )  # fmt: skip
    found = rx.search_user_profile(SearchUserProfileRequest(user_id="u1", source="café"))
    assert [p.profile_id for p in found] == ["p1"]
    assert rx.search_user_profile(SearchUserProfileRequest(user_id="u1", source="other")) == []


def test_an_end_time_at_the_end_of_time_is_accepted(rx: ReflexioStoreStorage) -> None:
    from datetime import datetime

    from reflexio.models.api_schema.retriever_schema import SearchInteractionRequest

    rx.add_user_interaction("u1", _interaction("u1", "r1", "hello there"))
    request = SearchInteractionRequest(user_id="u1", query="hello", end_time=datetime.max)
    assert [i.content for i in rx.search_interaction(request)] == ["hello there"]


def test_a_long_history_of_processed_interactions_is_left_out_on_both_databases(
    rx: ReflexioStoreStorage,
) -> None:
    """Reflexio's operation state lists every processed interaction id; 70,000 of them are more
    than PostgreSQL binds in one NOT IN."""
    for n in range(3):
        rx.add_user_interaction("u1", _interaction("u1", f"r{n}", f"message {n}"))
    first = min(i.interaction_id for i in rx.get_user_interaction("u1"))
    history = [first, *range(10**6, 10**6 + 70_000)]
    rx.upsert_operation_state("svc", {"last_processed_interaction_ids": history})
    _state, groups = rx.get_operation_state_with_new_request_interaction("svc", "u1")
    contents = sorted(i.content for g in groups for i in g.interactions)
    assert contents == ["message 1", "message 2"]


def test_large_text_is_kept_on_both_databases_and_indexed_up_to_postgres_limit(
    rx: ReflexioStoreStorage,
) -> None:
    """Long prose (here 460 KB) is stored and found on both databases. A text with more
    distinct words than one PostgreSQL full-text entry holds (1 MB) used to be refused there
    and kept by SQLite; now both keep it, and PostgreSQL indexes its words up to that limit
    (revision 0008): the first words are found on both, the last only on SQLite."""
    from reflexio.models.api_schema.retriever_schema import SearchInteractionRequest

    from tests.test_hostile_inputs import _distinct_words

    prose = " ".join(["the agent restarted the build and the tests passed again"] * 8_000)
    rx.add_user_interaction("u1", _interaction("u1", "r1", prose))
    distinct = _distinct_words(999_000)
    rx.add_user_interaction("u2", _interaction("u2", "r2", distinct))
    stored = {i.user_id: len(i.content) for i in rx.get_all_interactions(10)}
    assert stored == {"u1": len(prose), "u2": len(distinct)}

    def found(user: str, word: str) -> bool:
        request = SearchInteractionRequest(user_id=user, query=word, search_mode="fts")
        return bool(rx.search_interaction(request))

    first, last = distinct.split()[1], distinct.split()[-1]
    assert found("u1", "restarted") and found("u1", "again")
    assert found("u2", first)
    assert found("u2", last) is (rx.factory.backend == "sqlite")


def test_status_current_filters_current_rows(rx: ReflexioStoreStorage) -> None:
    """Reflexio's Status.CURRENT has the value 'None' (text); it used to be a raw ValueError."""
    from reflexio.models.api_schema.domain import Status

    rx.add_user_profile(
        "u1",
        [UserProfile(profile_id="p1", user_id="u1", content="likes tea",
                     last_modified_timestamp=NOW, generated_from_request_id="r1")],
    )  # fmt: skip
    assert [p.profile_id for p in rx.get_all_profiles(10, [Status.CURRENT])] == ["p1"]
    assert rx.update_all_profiles_status(Status.CURRENT, Status.ARCHIVED) == 1
    assert rx.get_all_profiles(10, [Status.CURRENT]) == []


# -- properties: hypothesis draws the hostile values ----------------------------------------

_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.text(alphabet=st.characters(blacklist_categories=()), min_size=1, max_size=8).map(
        lambda t: t + "\x00"
    ),
    st.just("\ud800"),
    st.just("k" * 3000),
    st.binary(max_size=8),
    st.lists(st.one_of(st.text(max_size=5), st.integers(), st.none()), max_size=4),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def test_hypothesis_arguments_get_our_errors_on_both_databases(
    sqlite_factory: SessionFactory, pg_factory: SessionFactory
) -> None:
    """Hypothesis draws a method, a parameter and a value; SQLite and PostgreSQL must both either
    accept it or refuse it with one of our errors, and agree on which."""
    from reflexio_store.errors import ReflexioStoreError

    sides = [
        ReflexioStoreStorage("org-1", factory=f, embedder=embed)
        for f in (sqlite_factory, pg_factory)
    ]
    disagreements: list[str] = []

    def outcome(rx: ReflexioStoreStorage, method: str, kwargs: dict[str, object]) -> str:
        try:
            getattr(rx, method)(**kwargs)
        except ReflexioStoreError as exc:
            return type(exc).__name__
        return "ok"

    @settings(
        max_examples=150,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(Phase.generate,),
        suppress_health_check=list(HealthCheck),
    )
    @given(call=st.sampled_from(CALLS), value=_values)
    def run(call: tuple[str, str, dict[str, object]], value: object) -> None:
        method, parameter, others = call
        kwargs = {**others, parameter: value}
        results = [outcome(rx, method, kwargs) for rx in sides]
        if results[0] != results[1]:
            disagreements.append(f"{method}({parameter}={value!r:.60}): {results}")

    run()
    assert disagreements == []


def test_the_constructor_checks_its_arguments(sqlite_factory: SessionFactory) -> None:
    from reflexio_store import ConfigurationError

    with pytest.raises(ValidationError, match="org_id must be text"):
        ReflexioStoreStorage(None, factory=sqlite_factory, embedder=embed)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="factory must be a reflexio_store SessionFactory"):
        ReflexioStoreStorage("o", factory="x", embedder=embed)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="embedder must be a callable"):
        ReflexioStoreStorage("o", factory=sqlite_factory, embedder=5)  # type: ignore[arg-type]
    rx = ReflexioStoreStorage("o", factory=sqlite_factory, embedder=lambda texts: None)
    with pytest.raises(ValidationError, match="The embedder returned a NoneType"):
        rx.add_user_interaction("u1", _interaction("u1", "r1", "hi"))
