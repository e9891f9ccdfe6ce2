"""PostgreSQL search plans: how one user's rows are searched depends on how many there are, and
every search is planned for its own values (never a cached generic plan)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session

from reflexio_store import SessionFactory
from reflexio_store.errors import ConfigurationError
from reflexio_store.models import Profile
from reflexio_store.search import postgres
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store
from reflexio_store.store import search as ops
from tests.conftest import PgEndpoints, make_pg_config
from tests.test_search import dims, near, profile_row

BIG, SMALL = 60, 12


def _seed(factory: SessionFactory) -> None:
    d = dims(factory)
    with factory.writer() as s:
        rows = [
            profile_row(user, f"{user} drinks coffee, cup {i}", near(d, 0.5 + i / 200, i + 7 * n))
            for n, (user, count) in enumerate((("big", BIG), ("small", SMALL)))
            for i in range(count)
        ]
        s.execute(insert(Profile), rows)
    with factory.writer_engine.connect() as conn:
        conn.exec_driver_sql(f'ANALYZE "{factory.storage.schema}".profiles')
        conn.commit()


def _bounds(monkeypatch: pytest.MonkeyPatch, rows: int, vector_rows: int | None = None) -> None:
    """Users above `rows` get the bounded text candidates, above `vector_rows` (default: the
    same) the HNSW walk."""
    monkeypatch.setattr(postgres, "NARROW_EXACT_ROWS", rows)
    monkeypatch.setattr(postgres, "VECTOR_EXACT_ROWS", rows if vector_rows is None else vector_rows)


def _hnsw_scans(s: Session, factory: SessionFactory) -> int:
    return int(
        s.execute(
            text("SELECT pg_stat_get_xact_numscans(CAST(:ix AS regclass))"),
            {"ix": f'"{factory.storage.schema}".ix_profiles_embedding_hnsw'},
        ).scalar_one()
    )


def _search(s: Session, factory: SessionFactory, user: str, mode: str) -> tuple[list[str], int]:
    d = dims(factory)
    # The exact path must not be chosen by cost: make a sort look prohibitive, as at scale.
    s.execute(text("SET LOCAL enable_sort = off"))
    before = _hnsw_scans(s, factory)
    hits = ops.search_profiles(
        s,
        "coffee" if mode == "hybrid" else None,
        embedding=near(d, 1.0, 0),
        mode=mode,  # type: ignore[arg-type]
        user_id=user,
        top_k=5,
        threshold=0.0,
    )
    return [h.item.content for h in hits], _hnsw_scans(s, factory) - before


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_user_with_many_rows_walks_hnsw_and_a_small_one_is_scanned_exactly(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    _bounds(monkeypatch, 30)
    _seed(pg_factory)
    with pg_factory.reader("strong") as s:
        big, big_scans = _search(s, pg_factory, "big", mode)
        small, small_scans = _search(s, pg_factory, "small", mode)
    assert big_scans >= 1, "a user above NARROW_EXACT_ROWS is searched through HNSW"
    assert small_scans == 0, "a user at or below NARROW_EXACT_ROWS is scanned exactly"
    # Both paths return that user's nearest rows, best first (cosine 0.5 + i/200 for row i).
    if mode == "vector":
        assert big == [f"big drinks coffee, cup {i}" for i in range(BIG - 1, BIG - 6, -1)]
        assert small == [f"small drinks coffee, cup {i}" for i in range(SMALL - 1, SMALL - 6, -1)]
    assert all(c.startswith("big ") for c in big) and len(big) == 5
    assert all(c.startswith("small ") for c in small) and len(small) == 5


def test_at_the_bound_the_exact_path_is_kept(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bounds(monkeypatch, BIG)
    _seed(pg_factory)
    with pg_factory.reader("strong") as s:
        _hits, scans = _search(s, pg_factory, "big", "vector")
    assert scans == 0


def _hybrid(s: Session, factory: SessionFactory, user: str) -> tuple[int, int]:
    """(hits that carry a text rank, HNSW scans) of a hybrid search of `user`'s rows."""
    s.execute(text("SET LOCAL enable_sort = off"))
    before = _hnsw_scans(s, factory)
    # Fused by text alone (vector_weight 0), so the top 5 are text hits while there are 5; the
    # vector branch still runs (its HNSW scans are counted).
    hits = ops.search_profiles(
        s,
        "coffee",
        embedding=near(dims(factory), 1.0, 0),
        user_id=user,
        top_k=5,
        threshold=0.0,
        vector_weight=0.0,
    )
    assert len(hits) == 5 and all(h.item.user_id == user for h in hits)
    return sum(h.text_rank is not None for h in hits), _hnsw_scans(s, factory) - before


@pytest.mark.parametrize("vector_rows", [30, BIG])
def test_the_text_and_vector_bounds_are_separate(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, vector_rows: int
) -> None:
    """Each branch follows its own bound: a user above the text bound gets the bounded text
    candidates (here one row) whatever the vector bound says, and the reverse. Every one of the
    big user's rows matches the text, so an exact text branch ranks all five hits."""
    monkeypatch.setattr(postgres, "TEXT_CANDIDATES", 1)
    _seed(pg_factory)
    text_rows = BIG if vector_rows == 30 else 30
    _bounds(monkeypatch, text_rows, vector_rows)
    with pg_factory.reader("strong") as s:
        ranked, scans = _hybrid(s, pg_factory, "big")
    assert scans == (1 if vector_rows == 30 else 0)  # the vector bound alone decides the walk
    assert ranked == (5 if text_rows == BIG else 1)  # the text bound alone decides the ranking


def test_a_text_search_does_not_make_a_large_user_look_small_to_vector_searches(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text search counts only up to its own (lower) bound; what it learns is "more than
    that", never a size that passes under the vector bound."""
    _bounds(monkeypatch, 10, 40)  # big: 60 rows, above both
    _seed(pg_factory)
    with pg_factory.reader("strong") as s:
        hits = ops.search_profiles(s, "coffee", mode="text", user_id="big", top_k=5)
        assert len(hits) == 5
        _hits, scans = _search(s, pg_factory, "big", "vector")
    assert scans >= 1, "60 rows > 40: walked through HNSW, not remembered as small"


def test_searches_are_never_prepared(pg_factory: SessionFactory) -> None:
    """psycopg prepares a statement after 5 runs and PostgreSQL may then use a generic plan
    that cannot tell one user from another; searches are sent unprepared every time, while
    other statements keep psycopg's preparation."""
    _seed(pg_factory)
    store = Store(pg_factory)
    d = dims(pg_factory)
    prepared: list[Any] = []
    with pg_factory.reader("strong") as s:
        raw = s.connection().connection.dbapi_connection
        threshold = raw.prepare_threshold  # type: ignore[union-attr]
        assert threshold is not None
        for i in range(3 * threshold + 3):
            user = ("big", "small")[i % 2]
            hits = ops.search_profiles(
                s, "coffee", embedding=near(d, 1.0, 0), user_id=user, top_k=3, threshold=0.0
            )
            assert {h.item.user_id for h in hits} == {user}
            s.execute(text("SELECT 1 WHERE :x = 1"), {"x": 1})
        prepared = list(s.execute(text("SELECT statement FROM pg_prepared_statements")).scalars())
        assert raw.prepare_threshold == threshold  # type: ignore[union-attr]
    assert not [p for p in prepared if "text_hits" in p or "vector_hits" in p]
    assert [p for p in prepared if "SELECT 1 WHERE" in p], "the control statement was prepared"
    assert store.count_profiles() == BIG + SMALL


def test_hybrid_results_do_not_change_after_many_runs(pg_factory: SessionFactory, pg: Any) -> None:
    _seed(pg_factory)
    pg.wait_for_replica()
    d = dims(pg_factory)
    store = Store(pg_factory)
    answers = set()
    for _ in range(15):
        hits = store.search_profiles(
            "coffee", embedding=near(d, 1.0, 0), user_id="small", top_k=5, threshold=0.0
        )
        answers.add(tuple(h.item.content for h in hits))
    assert len(answers) == 1
    (only,) = answers
    assert len(only) == 5 and all(c.startswith("small ") for c in only)


def test_a_cached_statement_runs_with_each_searchs_own_filter_values(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search's statement is built once per shape and reused: every later search of that
    shape must still see its own users, lists of users, tags, text and thresholds."""
    # Sizes not remembered: a filter counted small would add its exact-plan shape (tested below).
    monkeypatch.setattr(postgres.narrow_sizes, "KNOWN_FOR_SECONDS", -1.0)
    d = dims(pg_factory)
    users = ("ann", "bob", "cyd")
    with pg_factory.writer() as s:
        s.execute(
            insert(Profile),
            [
                profile_row(user, f"{user} likes tea {i}", near(d, 0.9 - i / 100, i),
                            tags=[f"{user}-tag", "shared"])
                for user in users
                for i in range(4)
            ],
        )  # fmt: skip
    postgres._statements.clear()
    with pg_factory.reader("strong") as s:

        def owners(**filters: Any) -> set[str]:
            hits = ops.search_profiles(
                s, "tea", embedding=near(d, 1.0, 0), top_k=20, threshold=0.0, **filters
            )
            return {h.item.user_id for h in hits}

        for user in users:
            assert owners(user_id=user) == {user}
        for chosen in (["ann", "bob"], ["cyd"], list(users), ["bob", "cyd"]):
            assert owners(user_id=chosen) == set(chosen)
        for user in users:
            assert owners(tags=f"{user}-tag") == {user}
        assert owners(tags="shared") == set(users)
        assert owners(tags=["ann-tag", "shared"]) == {"ann"}
        # Same shape, a stricter threshold: the value is bound per search, not kept.
        strict = ops.search_profiles(
            s, None, embedding=near(d, 1.0, 0), mode="vector", user_id="ann", threshold=0.895
        )
        assert [h.item.content for h in strict] == ["ann likes tea 0"]
    shapes = len(postgres._statements)
    # user_id (one value / a list), tags (one / two conditions), the vector-only search.
    assert shapes == 5, f"one statement per shape, got {shapes}"
    # The kept statements hold nothing of the searches that built them: no user id, tag, text
    # or vector (they are process-wide, shared by every organization).
    for stmt in postgres._statements.values():
        cache_key = stmt._generate_cache_key()
        assert cache_key is not None
        held = [bind.value for bind in cache_key.bindparams if bind.required]
        assert held and all(value is None for value in held)
        leftovers = repr([bind.value for bind in cache_key.bindparams])
        assert not any(word in leftovers for word in ("ann", "bob", "cyd", "tea", "shared"))


class _Sent:
    """The SQL of every statement an engine runs, while attached."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __enter__(self) -> _Sent:
        event.listen(self.engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)

    def counted(self) -> bool:
        """The last search counted the user's rows (both plans in its statement)."""
        searches = [s for s in self.statements if "fused" in s]
        return "narrow_size" in searches[-1]


@pytest.mark.parametrize("mode", ["vector", "hybrid"])
def test_a_user_counted_small_is_then_searched_with_the_exact_plan_alone(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """After one search has counted a user well below the bound, that user's next searches send
    the exact plan alone (no count, no walk in the statement) and return the same hits; a large
    user is counted every time."""
    _bounds(monkeypatch, 30)
    _seed(pg_factory)
    with _Sent(pg_factory.writer_engine.engine) as sent, pg_factory.reader("strong") as s:
        first, _ = _search(s, pg_factory, "small", mode)
        assert sent.counted()
        again, scans = _search(s, pg_factory, "small", mode)
        assert not sent.counted() and scans == 0
        assert again == first
        for _ in range(2):
            _big, big_scans = _search(s, pg_factory, "big", mode)
            assert sent.counted() and big_scans >= 1


def test_a_remembered_size_is_judged_by_the_bounds_of_the_searchs_branches(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user within half the vector bound but above the text bound: vector searches send the
    exact plan alone once counted, hybrid searches (whose text branch is bounded) keep counting."""
    _bounds(monkeypatch, 30, 2 * BIG)
    _seed(pg_factory)
    with _Sent(pg_factory.writer_engine.engine) as sent, pg_factory.reader("strong") as s:
        first, _ = _search(s, pg_factory, "big", "vector")
        assert sent.counted()
        again, scans = _search(s, pg_factory, "big", "vector")
        assert not sent.counted() and scans == 0 and again == first
        for _ in range(2):
            _search(s, pg_factory, "big", "hybrid")
            assert sent.counted()


def test_a_user_who_grew_is_scanned_exactly_until_the_size_expires(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remembered size can only cost time: rows added meanwhile are found by the exact scan;
    once the size expires, the user is counted again and walked through HNSW."""
    _bounds(monkeypatch, 30)
    _seed(pg_factory)
    with pg_factory.reader("strong") as s:
        _search(s, pg_factory, "small", "vector")  # counted: 12 rows
    d = dims(pg_factory)
    with pg_factory.writer() as s:
        rows = [
            profile_row("small", f"small new {i}", near(d, 0.9 + i / 1000, 100 + i))
            for i in range(40)
        ]
        s.execute(insert(Profile), rows)
    with pg_factory.reader("strong") as s:
        hits, scans = _search(s, pg_factory, "small", "vector")
    assert scans == 0, "still remembered as small: scanned exactly"
    assert hits == [f"small new {i}" for i in range(39, 34, -1)]  # the new rows, nearest first
    later = postgres.narrow_sizes._clock() + postgres.narrow_sizes.KNOWN_FOR_SECONDS + 1
    monkeypatch.setattr(postgres.narrow_sizes, "_clock", lambda: later)
    with pg_factory.reader("strong") as s:
        walked, scans = _search(s, pg_factory, "small", "vector")
    assert scans >= 1, "52 rows > 30: counted again and walked"
    assert walked == hits


def test_remembered_sizes_are_per_organization(
    pg: Any, pg_factory: SessionFactory, other_pg_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same user id in another organization's schema is counted there, not taken from here."""
    from tests.conftest import make_pg_config

    _bounds(monkeypatch, 30)
    _seed(pg_factory)
    with pg_factory.reader("strong") as s:
        _search(s, pg_factory, "small", "vector")  # "small" is small here
    theirs = SessionFactory.from_config(make_pg_config(pg, other_pg_schema))
    try:
        d = dims(theirs)
        with theirs.writer() as s:  # there, "small" has 60 rows
            s.execute(
                insert(Profile),
                [profile_row("small", f"theirs {i}", near(d, 0.5, i)) for i in range(60)],
            )
        with _Sent(theirs.writer_engine.engine) as sent, theirs.reader("strong") as s:
            hits, scans = _search(s, theirs, "small", "vector")
            assert sent.counted() and scans >= 1
        assert all(h.startswith("theirs ") for h in hits)
    finally:
        theirs.dispose()


def test_remembered_sizes_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from reflexio_store.search import narrow_sizes

    monkeypatch.setattr(narrow_sizes, "MAX_KNOWN", 3)
    monkeypatch.setattr(narrow_sizes, "_known", type(narrow_sizes._known)())
    for user in range(5):
        narrow_sizes.remember(("db", user), 10, 31)
    assert len(narrow_sizes._known) == 3
    assert not narrow_sizes.known_small(("db", 0), 30)  # the oldest were dropped
    assert narrow_sizes.known_small(("db", 4), 30)
    assert not narrow_sizes.known_small(("db", 4), 19)  # 10 rows: more than half of 19


def test_expired_sizes_are_dropped_when_the_next_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from reflexio_store.search import narrow_sizes

    monkeypatch.setattr(narrow_sizes, "_known", type(narrow_sizes._known)())
    now = [1000.0]
    monkeypatch.setattr(narrow_sizes, "_clock", lambda: now[0])
    narrow_sizes.remember(("db", "old"), 10, 31)
    now[0] += narrow_sizes.KNOWN_FOR_SECONDS + 1
    narrow_sizes.remember(("db", "new"), 10, 31)
    assert len(narrow_sizes._known) == 1
    assert narrow_sizes.known_small(("db", "new"), 30)
    assert not narrow_sizes.known_small(("db", "old"), 30)


def test_through_store_the_second_search_of_a_user_skips_the_count(
    pg_factory: SessionFactory, pg: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Store call opens its own session on the replica: the size remembered by the first
    search must be found by the second (SQLAlchemy adds an alias to the schema map at the
    engine's first execution, which made the second key differ)."""
    _bounds(monkeypatch, 30)
    _seed(pg_factory)
    pg.wait_for_replica()
    store = Store(pg_factory)
    d = dims(pg_factory)
    with _Sent(pg_factory.replicas.replicas[0].engine.engine) as sent:
        for expect_count in (True, False, False):
            store.search_profiles("coffee", embedding=near(d, 1.0, 0), user_id="small")
            assert sent.counted() is expect_count


def test_the_vector_bound_is_a_setting(
    pg: PgEndpoints, pg_schema: str, pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS moves the bound for the factories built with it; a
    bad value is refused by name."""
    _seed(pg_factory)
    monkeypatch.setenv("REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS", "30")
    storage = resolve_storage(make_pg_config(pg, pg_schema), StorageSettings())
    assert storage.describe()["vector_exact_rows"] == 30
    factory = SessionFactory(storage)
    try:
        with factory.reader("strong") as s:
            walked, scans = _search(s, factory, "big", "vector")
        assert scans >= 1, "60 rows > 30: walked through HNSW"
    finally:
        factory.dispose()
    with pg_factory.reader("strong") as s:  # built without it: the default bound
        exact, scans = _search(s, pg_factory, "big", "vector")
    assert scans == 0 and exact == walked
    assert pg_factory.storage.describe()["vector_exact_rows"] == postgres.VECTOR_EXACT_ROWS
    monkeypatch.setenv("REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS", "-1")
    with pytest.raises(ConfigurationError, match="REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS"):
        resolve_storage(make_pg_config(pg, pg_schema))
