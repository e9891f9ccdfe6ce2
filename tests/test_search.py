"""Text, vector and hybrid search on SQLite and PostgreSQL (primary + streaming replica).

Rows are inserted directly with Core INSERTs; searches run through the real reader sessions.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.orm import Session

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.models import (
    AgentPlaybook,
    AgentSuccessEvaluationResult,
    Interaction,
    Profile,
    Request,
    UserPlaybook,
)
from reflexio_store.search import (
    SearchHit,
    SearchMode,
    fts5_query,
    query_terms,
    reciprocal_rank_fusion,
)
from reflexio_store.store import AsyncStore, Store
from reflexio_store.store import search as ops

MODES: tuple[SearchMode, ...] = ("text", "vector", "hybrid")


# -- helpers ---------------------------------------------------------------------------------


def dims(factory: SessionFactory) -> int:
    return factory.storage.embedding_dimensions


def axis(d: int, i: int = 0) -> np.ndarray[Any, np.dtype[np.float32]]:
    v = np.zeros(d, dtype=np.float32)
    v[i] = 1.0
    return v


def near(d: int, cos: float, seed: int) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A unit vector whose cosine similarity with axis(d, 0) is `cos`."""
    rng = np.random.default_rng(seed)
    u = rng.normal(size=d)
    u[0] = 0.0
    u /= np.linalg.norm(u)
    v = cos * axis(d).astype(np.float64) + np.sqrt(max(0.0, 1 - cos * cos)) * u
    out: np.ndarray[Any, np.dtype[np.float32]] = v.astype(np.float32)
    return out


@pytest.fixture
def sync_replica(factory: SessionFactory, request: pytest.FixtureRequest) -> Callable[[], None]:
    """Wait until the replica has what the primary committed (no-op on SQLite)."""
    if factory.backend != "postgresql":
        return lambda: None
    pg = request.getfixturevalue("pg")
    return pg.wait_for_replica  # type: ignore[no-any-return]


def profile_row(user: str, content: str, emb: Any, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "profile_id": uuid.uuid4().hex,
        "user_id": user,
        "content": content,
        "embedding": emb,
        "extractor_names": [],
        "tags": [],
        "status": Status.CURRENT,
    }
    row.update(extra)
    return row


def ids(hits: list[SearchHit[Any]], attr: str = "content") -> list[Any]:
    return [getattr(h.item, attr) for h in hits]


# -- pure units ------------------------------------------------------------------------------


def test_rrf_scores_and_missing_rank() -> None:
    fused = dict(reciprocal_rank_fusion(["a", "b"], ["b", "c", "d"]))
    # a: text rank 1, missing from vector (3 long) -> rank 4
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 64)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    # c: missing from text (2 long) -> rank 3
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 62)
    order = [k for k, _ in reciprocal_rank_fusion(["a", "b"], ["b", "c", "d"])]
    assert order[0] == "b"
    weighted = reciprocal_rank_fusion(["a"], ["b"], text_weight=2.0, vector_weight=0.5)
    assert [k for k, _ in weighted] == ["a", "b"]
    assert weighted[0][1] == pytest.approx(2 / 61 + 0.5 / 62)


def test_fts5_query_keeps_only_quoted_terms() -> None:
    assert fts5_query('content:coffee AND "tea* NEAR(x y)') == (
        '"content" OR "coffee" OR "tea" OR "near" OR "x" OR "y"'
    )
    assert fts5_query("what does the user like about coffee?") == '"user" OR "like" OR "coffee"'
    assert fts5_query("the and of") == '"the" OR "and" OR "of"'  # only stop words: kept
    assert fts5_query("") is None
    assert fts5_query("   \t\n") is None
    assert fts5_query("*^:()\"'-+ \x00 🎉") is None
    assert query_terms("Café crème 42 under_score") == ["café", "crème", "42", "under", "score"]
    assert len(query_terms(" ".join(f"w{i}" for i in range(500)))) == 64


# -- modes and ranking ----------------------------------------------------------------------


def test_modes_rank_expected_rows(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    rows = [
        profile_row("u", "enjoys espresso and strong coffee", near(d, 0.99, 1)),
        profile_row("u", "drinks green tea every morning", near(d, 0.30, 2)),
        profile_row("u", "coffee at the office sometimes", near(d, 0.70, 3)),
        profile_row("u", "has a dog named rex", near(d, 0.95, 4)),
        profile_row("u", "no embedding but talks about espresso", None),
    ]
    with factory.writer() as s:
        s.execute(insert(Profile), rows)
    sync_replica()
    store = Store(factory)

    text_hits = store.search_profiles("espresso coffee", mode="text")
    # Terms are OR-ed on both databases; the row with both ranks first.
    either = {"coffee at the office sometimes", "no embedding but talks about espresso"}
    expected = {"enjoys espresso and strong coffee"}
    assert set(ids(text_hits)) == expected | either
    assert ids(text_hits)[0] == "enjoys espresso and strong coffee"
    assert all(h.similarity is None and h.text_rank is not None for h in text_hits)
    assert [h.score for h in text_hits] == sorted((h.score for h in text_hits), reverse=True)

    vec_hits = store.search_profiles(embedding=axis(d), mode="vector")
    # the tea row (0.30) is under the default 0.4 threshold; the row without embedding is skipped
    assert ids(vec_hits) == [
        "enjoys espresso and strong coffee",
        "has a dog named rex",
        "coffee at the office sometimes",
    ]
    assert [h.similarity for h in vec_hits] == pytest.approx([0.99, 0.95, 0.70], abs=1e-4)
    assert all(h.score == h.similarity and h.text_rank is None for h in vec_hits)

    assert len(store.search_profiles(embedding=axis(d), mode="vector", threshold=-1.0)) == 4
    assert ids(store.search_profiles(embedding=axis(d), mode="vector", top_k=1)) == [
        "enjoys espresso and strong coffee"
    ]

    hybrid = store.search_profiles("espresso coffee", embedding=axis(d))  # mode inferred
    by_content = {h.item.content: h for h in hybrid}
    assert ids(hybrid)[0] == "enjoys espresso and strong coffee"
    assert set(by_content) == either | {
        "enjoys espresso and strong coffee",
        "has a dog named rex",
        "coffee at the office sometimes",
    }
    top = by_content["enjoys espresso and strong coffee"]
    assert top.score == pytest.approx(1 / 61 + 1 / 61)
    assert top.similarity == pytest.approx(0.99, abs=1e-4) and top.text_rank is not None
    dog = by_content["has a dog named rex"]
    text_len = len(text_hits)
    assert dog.text_rank is None
    assert dog.score == pytest.approx(1 / (60 + text_len + 1) + 1 / 62)
    # weights move the fusion: text only
    text_only = store.search_profiles("espresso coffee", embedding=axis(d), vector_weight=0.0)
    assert ids(text_only)[: len(text_hits)] == ids(text_hits)


# -- the required filter test ----------------------------------------------------------------


def _insert_profiles(s: Session, d: int, user: str, n: int, strong: bool, **extra: Any) -> None:
    content = (
        "espresso coffee espresso coffee lover {i}"
        if strong
        else "sometimes mentions coffee in a long unrelated sentence about travel plans {i}"
    )
    s.execute(
        insert(Profile),
        [
            profile_row(
                user,
                content.format(i=i),
                near(d, 0.97 if strong else 0.55 + i * 0.01, hash((user, i)) % 10_000),
                **extra,
            )
            for i in range(n)
        ],
    )


def _seed_profiles(s: Session, d: int) -> None:
    _insert_profiles(s, d, "A", 50, True)
    _insert_profiles(s, d, "B", 5, False)


def _seed_interactions(s: Session, d: int) -> None:
    s.execute(
        insert(Request),
        [{"request_id": "ra", "user_id": "A"}, {"request_id": "rb", "user_id": "B"}],
    )
    s.execute(
        insert(Interaction),
        [
            {
                "request_id": "ra",
                "user_id": "A",
                "content": f"espresso coffee espresso coffee lover {i}",
                "embedding": near(d, 0.97, i),
                "tools_used": [],
            }
            for i in range(50)
        ]
        + [
            {
                "request_id": "rb",
                "user_id": "B",
                "content": f"sometimes mentions coffee in a long sentence about travel {i}",
                "embedding": near(d, 0.55 + i * 0.01, 100 + i),
                "tools_used": [],
            }
            for i in range(5)
        ],
    )


def _playbook_rows(d: int, key: str) -> list[dict[str, Any]]:
    rows = []
    for i in range(55):
        strong = i < 50
        owner = "A" if strong else "B"
        rows.append(
            {
                key: owner,
                "playbook_name": "pb-" + owner if key == "user_id" else owner,
                "content": (
                    f"espresso coffee espresso coffee lover {i}"
                    if strong
                    else f"sometimes mentions coffee in a long sentence about travel {i}"
                ),
                "embedding": near(d, 0.97 if strong else 0.55 + (i - 50) * 0.01, i),
                "status": Status.CURRENT,
            }
        )
    return rows


def _seed_user_playbooks(s: Session, d: int) -> None:
    s.execute(
        insert(UserPlaybook),
        [{**r, "source_interaction_ids": []} for r in _playbook_rows(d, "user_id")],
    )


def _seed_agent_playbooks(s: Session, d: int) -> None:
    s.execute(
        insert(AgentPlaybook),
        [
            {**r, "playbook_status": PlaybookReviewStatus.APPROVED}
            for r in _playbook_rows(d, "playbook_name")
        ],
    )


ENTITIES: dict[str, tuple[Callable[[Session, int], None], str, dict[str, Any], dict[str, Any]]] = {
    # name: (seed, store method, filter for A, filter for B)
    "profiles": (_seed_profiles, "search_profiles", {"user_id": "A"}, {"user_id": "B"}),
    "interactions": (_seed_interactions, "search_interactions", {"user_id": "A"}, {"user_id": "B"}),
    "user_playbooks": (
        _seed_user_playbooks,
        "search_user_playbooks",
        {"user_id": "A"},
        {"user_id": "B"},
    ),
    "agent_playbooks": (
        _seed_agent_playbooks,
        "search_agent_playbooks",
        {"playbook_name": "A"},
        {"playbook_name": "B"},
    ),
}


@pytest.mark.parametrize("entity", list(ENTITIES))
def test_filter_that_removes_the_unfiltered_top_k_returns_the_right_rows(
    factory: SessionFactory, sync_replica: Callable[[], None], entity: str
) -> None:
    seed, method, _filter_a, filter_b = ENTITIES[entity]
    d = dims(factory)
    with factory.writer() as s:
        seed(s, d)
    sync_replica()
    search = getattr(Store(factory), method)
    for mode in MODES:
        unfiltered = search("coffee", embedding=axis(d), mode=mode, top_k=5)
        assert all("lover" in h.item.content for h in unfiltered), mode  # all from A
        hits = search("coffee", embedding=axis(d), mode=mode, top_k=10, **filter_b)
        assert len(hits) == 5, (mode, [h.item.content for h in hits])
        assert all("travel" in h.item.content for h in hits), mode
        if mode == "vector":
            # B's similarities are 0.55..0.59: best first
            assert [h.similarity for h in hits] == pytest.approx(
                [0.59, 0.58, 0.57, 0.56, 0.55], abs=1e-4
            )


def test_filtered_hnsw_scan_still_fills_the_list(pg_factory: SessionFactory, pg: Any) -> None:
    """PostgreSQL: with the HNSW index forced and a small ef_search, a filter matching few, far
    rows still returns them all (iterative scan), and the HNSW index really was scanned."""
    d = dims(pg_factory)
    with pg_factory.writer() as s:
        _insert_profiles(s, d, "A", 400, True, source="a")
        _insert_profiles(s, d, "A", 5, False, source="b")
    with pg_factory.writer_engine.connect() as conn:
        conn.exec_driver_sql(f'ANALYZE "{pg_factory.storage.schema}".profiles')
        conn.commit()
    with pg_factory.reader("strong") as s:
        s.execute(text("SET LOCAL enable_seqscan = off"))
        s.execute(text("SET LOCAL enable_bitmapscan = off"))
        s.execute(text("SET LOCAL enable_sort = off"))  # an ordered (HNSW) path, not a sort
        hits = ops.search_profiles(
            s, embedding=axis(d), mode="vector", source="b", top_k=10, ef_search=10
        )
        scans = s.execute(
            text("SELECT pg_stat_get_xact_numscans(CAST(:ix AS regclass))"),
            {"ix": f'"{pg_factory.storage.schema}".ix_profiles_embedding_hnsw'},
        ).scalar_one()
    assert scans >= 1
    assert len(hits) == 5
    assert all(h.item.source == "b" for h in hits)
    assert [h.similarity for h in hits] == pytest.approx([0.59, 0.58, 0.57, 0.56, 0.55], abs=1e-4)


# -- filters ---------------------------------------------------------------------------------


def test_profile_filters(factory: SessionFactory, sync_replica: Callable[[], None]) -> None:
    d = dims(factory)
    now = datetime.now(UTC)
    e = near(d, 0.9, 7)
    rows = [
        profile_row(
            "u",
            "current one",
            e,
            source="chat",
            extractor_names=["facts", "prefs"],
            tags=["food", "drink"],
            created_at=now - timedelta(days=3),
        ),
        profile_row(
            "u", "pending one", e, status=Status.PENDING, created_at=now - timedelta(days=2)
        ),
        profile_row(
            "u", "archived one", e, status=Status.ARCHIVED, created_at=now - timedelta(days=1)
        ),
        profile_row("u", "expired one", e, expires_at=now - timedelta(hours=1), created_at=now),
        profile_row(
            "u",
            "not yet expired one",
            e,
            expires_at=now + timedelta(days=1),
            source="email",
            extractor_names=["facts"],
            tags=["foodie"],
            created_at=now,
        ),
        profile_row("v", "other user one", e, created_at=now),
    ]
    with factory.writer() as s:
        s.execute(insert(Profile), rows)
    sync_replica()
    store = Store(factory)

    def found(**kw: Any) -> set[str]:
        out: set[str] = set()
        for mode in MODES:
            hits = store.search_profiles("one", embedding=axis(d), mode=mode, top_k=50, **kw)
            got = set(ids(hits))
            if out:
                assert got == out, (mode, kw)
            out = got
        return out

    current = {"current one", "not yet expired one", "other user one"}
    assert found() == current
    assert found(user_id="u") == {"current one", "not yet expired one"}
    assert found(user_id=["u", "v"]) == current
    assert found(status=None, user_id="u") == {
        "current one",
        "pending one",
        "archived one",
        "not yet expired one",
    }
    assert found(status=[Status.PENDING, "archived"]) == {"pending one", "archived one"}
    assert found(status="pending") == {"pending one"}
    assert found(include_expired=True) == current | {"expired one"}
    assert found(source="chat") == {"current one"}
    assert found(extractor_name="facts") == {"current one", "not yet expired one"}
    assert found(extractor_name=["facts", "prefs"]) == {"current one"}
    # containment is list membership on both databases: "food" is not in ["foodie"]
    assert found(tags="food") == {"current one"}
    assert found(tags=["food", "drink"]) == {"current one"}
    assert found(tags="drinks") == set()
    assert found(created_after=now - timedelta(days=4), created_before=now - timedelta(days=1)) == {
        "current one"
    }
    assert found(created_after=now) == {"not yet expired one", "other user one"}


def test_playbook_and_interaction_filters(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    e = near(d, 0.9, 11)
    with factory.writer() as s:
        s.execute(
            insert(Request),
            [{"request_id": "r1", "user_id": "u"}, {"request_id": "r2", "user_id": "u"}],
        )
        s.execute(
            insert(Interaction),
            [
                {
                    "request_id": "r1",
                    "user_id": "u",
                    "role": "user",
                    "content": "shipping delay",
                    "embedding": e,
                    "tools_used": [],
                },
                {
                    "request_id": "r2",
                    "user_id": "u",
                    "role": "assistant",
                    "content": "shipping refund",
                    "embedding": e,
                    "tools_used": [],
                },
            ],
        )
        s.execute(
            insert(UserPlaybook),
            [
                {
                    "user_id": "u",
                    "playbook_name": "p1",
                    "agent_version": "v1",
                    "content": "shipping rule one",
                    "embedding": e,
                    "source_interaction_ids": [],
                    "status": Status.CURRENT,
                },
                {
                    "user_id": "u",
                    "playbook_name": "p2",
                    "agent_version": "v2",
                    "content": "shipping rule two",
                    "embedding": e,
                    "source_interaction_ids": [],
                    "status": Status.CURRENT,
                },
                {
                    "user_id": "u",
                    "playbook_name": "p1",
                    "agent_version": "v1",
                    "content": "shipping rule old",
                    "embedding": e,
                    "source_interaction_ids": [],
                    "status": Status.ARCHIVED,
                },
            ],
        )
        s.execute(
            insert(AgentPlaybook),
            [
                {
                    "playbook_name": "p1",
                    "agent_version": "v1",
                    "content": "shipping agent one",
                    "embedding": e,
                    "playbook_status": PlaybookReviewStatus.APPROVED,
                    "status": Status.CURRENT,
                },
                {
                    "playbook_name": "p1",
                    "agent_version": "v2",
                    "content": "shipping agent two",
                    "embedding": e,
                    "playbook_status": PlaybookReviewStatus.PENDING,
                    "status": Status.CURRENT,
                },
            ],
        )
    sync_replica()
    store = Store(factory)
    for mode in MODES:
        kw: dict[str, Any] = {"embedding": axis(d), "mode": mode}
        assert ids(store.search_interactions("shipping", role="user", **kw)) == ["shipping delay"]
        assert ids(store.search_interactions("shipping", request_id="r2", **kw)) == [
            "shipping refund"
        ]
        assert ids(store.search_user_playbooks("shipping", playbook_name="p1", **kw)) == [
            "shipping rule one"
        ]
        assert set(
            ids(store.search_user_playbooks("shipping", playbook_name="p1", status=None, **kw))
        ) == {"shipping rule one", "shipping rule old"}
        assert ids(store.search_user_playbooks("shipping", agent_version="v2", **kw)) == [
            "shipping rule two"
        ]
        assert ids(store.search_agent_playbooks("shipping", playbook_status="approved", **kw)) == [
            "shipping agent one"
        ]
        assert ids(store.search_agent_playbooks("shipping", agent_version="v2", **kw)) == [
            "shipping agent two"
        ]
        assert len(store.search_agent_playbooks("shipping", **kw)) == 2


def test_evaluation_results_vector_search(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    with factory.writer() as s:
        s.execute(
            insert(AgentSuccessEvaluationResult),
            [
                {
                    "session_id": f"s{i}",
                    "evaluation_name": "e",
                    "agent_version": "v1" if i < 3 else "v2",
                    "is_success": i % 2 == 0,
                    "embedding": near(d, 0.5 + i * 0.1, i),
                }
                for i in range(5)
            ],
        )
    sync_replica()
    store = Store(factory)
    hits = store.search_evaluation_results(axis(d))
    assert ids(hits, "session_id") == ["s4", "s3", "s2", "s1", "s0"]
    assert ids(store.search_evaluation_results(axis(d), agent_version="v1"), "session_id") == [
        "s2",
        "s1",
        "s0",
    ]
    assert ids(
        store.search_evaluation_results(axis(d), is_success=True, threshold=0.65), "session_id"
    ) == ["s4", "s2"]


# -- hostile text ----------------------------------------------------------------------------

NASTY = [
    "",
    " ",
    "\t\n  ",
    '"',
    '""',
    "'",
    "''",
    "*",
    "^",
    ":",
    "content:",
    "content:coffee",
    "expanded_terms:x",
    "profiles_fts:coffee",
    "NEAR",
    "NEAR(",
    "NEAR(coffee tea, 2)",
    "AND",
    "OR",
    "NOT",
    "coffee AND",
    "OR coffee",
    "NOT NOT",
    "coffee NOT",
    "(",
    ")",
    "(()",
    "coffee*",
    "*coffee",
    "^coffee",
    "-coffee",
    "+coffee",
    "coffee -tea",
    '"unterminated',
    'a"b"c',
    "{content}: x",
    "[x]",
    "x;DROP TABLE profiles;--",
    "\x00",
    "coffee\x00tea",
    "\x00\x00",
    "🎉",
    "coffee 🎉☕",
    "☕",
    "é",
    "Café",
    "ß",
    "日本語のテキスト",
    "مرحبا",
    "\u200b",
    "\ufeff",
    "a" * 5000,
    "coffee " * 300,
    "%",
    "_",
    "\\",
    "\\x00",
    "'; --",
    "$1",
    "?",
    ":q",
    "@@",
    "<->",
    "!",
    "&",
    "|",
    "!coffee",
    "coffee & tea | !milk",
    "coffee <-> tea",
    "\ud83c",
    "coffee\ud83c tea",
    "\udfff\ud800",
    "coffee" + "\x00" * 3 + "tea",
]


def _random_nasty(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    symbols = list("\"'*^:()-+!&|<>{}[],.;\\ \t\n\x00🎉éß日")
    alphabet = [*symbols, "NEAR", "AND", "OR", "NOT", "coffee", "content"]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(count)]


def test_hostile_query_text_never_raises(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    with factory.writer() as s:
        s.execute(
            insert(Profile),
            [
                profile_row("u", "coffee and tea near the content", near(d, 0.9, 1)),
                profile_row("u", "café crème", near(d, 0.8, 2)),
            ],
        )
    sync_replica()
    with factory.reader() as s:
        for q in NASTY + _random_nasty(1234, 300):
            text_hits = ops.search_profiles(s, q, mode="text")
            hybrid = ops.search_profiles(s, q, embedding=axis(d), mode="hybrid")
            if not query_terms(q):
                assert text_hits == [], repr(q)
                # hybrid falls back to the vector branch alone
                assert len(hybrid) == 2, repr(q)
            ops.search_interactions(s, q, mode="text")
            ops.search_user_playbooks(s, q, mode="text")
            ops.search_agent_playbooks(s, q, mode="text")
        if factory.backend == "sqlite":
            assert ids(ops.search_profiles(s, 'content:"coffee NEAR(', mode="text")) == [
                "coffee and tea near the content"
            ]
        assert ids(ops.search_profiles(s, '"coffee" tea:', mode="text")) == [
            "coffee and tea near the content"
        ]
        assert ids(ops.search_profiles(s, "CAFÉ!!", mode="text")) == ["café crème"]
        assert ids(ops.search_profiles(s, "coffee\x00", mode="text")) == [
            "coffee and tea near the content"
        ]


# -- bad input -------------------------------------------------------------------------------


def test_bad_input_is_a_validation_error(factory: SessionFactory) -> None:
    d = dims(factory)
    store = Store(factory)
    bad: list[dict[str, Any]] = [
        {"embedding": [0.1] * (d - 1), "mode": "vector"},
        {"embedding": [float("nan")] * d, "mode": "vector"},
        {"embedding": [0.0] * d, "mode": "vector"},
        {"embedding": "not a vector", "mode": "vector"},
        {"query": "x", "mode": "fuzzy"},
        {"query": "x", "status": "deleted"},
        {"query": "x", "status": []},
        {"query": "x", "top_k": 0},
        {"query": "x", "top_k": 1001},
        {"query": "x", "top_k": 2.5},
        {"query": "x", "threshold": 1.5},
        {"query": "x", "threshold": float("nan")},
        {"query": "x", "text_weight": -1},
        {"query": "x", "mode": "vector"},
        {"query": "x", "mode": "hybrid"},
        {"embedding": axis(d), "mode": "text"},
        {"query": 42},
        {"query": "x", "created_after": datetime(2020, 1, 1)},
        {"query": "x", "tags": [1]},
        {"query": "x", "user_id": "a\x00b"},
        {"query": "x", "ef_search": 0},
    ]
    for kwargs in bad:
        with pytest.raises(ValidationError):
            store.search_profiles(**kwargs)
    with pytest.raises(ValidationError):
        store.search_agent_playbooks("x", playbook_status="maybe")
    with pytest.raises(ValidationError):
        store.search_evaluation_results([1.0] * (d + 1))
    assert store.search_profiles("x", top_k=1000) == []


# -- routing ---------------------------------------------------------------------------------


def test_search_runs_on_the_replica_and_strong_reads_the_primary(
    pg_factory: SessionFactory, pg: Any
) -> None:
    d = dims(pg_factory)
    with pg_factory.writer() as s:
        s.execute(insert(Profile), [profile_row("u", "replicated coffee fact", axis(d))])
    pg.wait_for_replica()
    with pg_factory.reader() as s:
        hits = ops.search_profiles(s, "coffee", embedding=axis(d))
        assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is True
    assert ids(hits) == ["replicated coffee fact"]

    with pg_factory.reader("strong") as s:
        assert s.execute(text("SELECT pg_is_in_recovery()")).scalar_one() is False

    # A fresh write is found at once with consistency="strong" (a read on the primary).
    store = Store(pg_factory)
    with pg_factory.writer() as s:
        s.execute(insert(Profile), [profile_row("u", "brand new tea fact", axis(d))])
    hits = store.search_profiles("tea", consistency="strong")
    assert ids(hits) == ["brand new tea fact"]
    assert store.search_profiles(embedding=axis(d), consistency="strong", top_k=5) and True


def test_store_reader_session_is_on_the_replica(pg_factory: SessionFactory) -> None:
    """Store routes a search through factory.reader("eventual"): watch the session it opens."""
    seen: list[bool] = []
    original = ops.search_profiles

    def spy(session: Session, *args: Any, **kwargs: Any) -> Any:
        seen.append(session.execute(text("SELECT pg_is_in_recovery()")).scalar_one())
        return original(session, *args, **kwargs)

    op = Store.search_profiles
    saved = op.fn
    op.fn = spy
    try:
        store = Store(pg_factory)
        store.search_profiles("anything")
        store.search_profiles("anything", consistency="strong")
    finally:
        op.fn = saved
    assert seen == [True, False]


async def test_async_store_search(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    with factory.writer() as s:
        s.execute(
            insert(Profile),
            [
                profile_row("u", "async coffee fact", near(d, 0.9, 1)),
                profile_row("w", "async coffee other", near(d, 0.95, 2)),
            ],
        )
    sync_replica()
    store = AsyncStore(factory)
    try:
        hits = await store.search_profiles("coffee", embedding=axis(d), user_id="u")
        assert ids(hits) == ["async coffee fact"]
        assert hits[0].similarity == pytest.approx(0.9, abs=1e-4)
        strong = await store.search_profiles("coffee", mode="text", consistency="strong")
        assert set(ids(strong)) == {"async coffee fact", "async coffee other"}
    finally:
        await factory.adispose()


def test_hits_are_detached_rows_without_embedding_unless_asked(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    d = dims(factory)
    e = near(d, 0.9, 3)
    with factory.writer() as s:
        s.execute(insert(Profile), [profile_row("u", "vector kept", e)])
    sync_replica()
    store = Store(factory)
    hit = store.search_profiles("vector", embedding=axis(d))[0]
    assert hit.item.profile_id and hit.item.user_id == "u"
    with pytest.raises(Exception):  # noqa: B017 - deferred with raiseload
        _ = hit.item.embedding
    full = store.search_profiles("vector", embedding=axis(d), include_embedding=True)[0]
    assert full.item.embedding is not None
    assert np.allclose(np.asarray(full.item.embedding), e, atol=1e-6)
    with pytest.raises(AttributeError):
        hit.score = 1.0  # type: ignore[misc]


def test_default_thresholds_differ_by_entity(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    """Similarity 0.25: under the 0.4 default of profiles and playbooks, over the 0.1 default
    of interactions."""
    d = dims(factory)
    weak = near(d, 0.25, 5)
    with factory.writer() as s:
        s.execute(insert(Request), [{"request_id": "r", "user_id": "u"}])
        s.execute(
            insert(Interaction),
            [
                {
                    "request_id": "r",
                    "user_id": "u",
                    "content": "x",
                    "embedding": weak,
                    "tools_used": [],
                }
            ],
        )
        s.execute(insert(Profile), [profile_row("u", "x", weak)])
        s.execute(
            insert(UserPlaybook),
            [
                {
                    "user_id": "u",
                    "playbook_name": "p",
                    "content": "x",
                    "embedding": weak,
                    "source_interaction_ids": [],
                    "status": Status.CURRENT,
                }
            ],
        )
    sync_replica()
    store = Store(factory)
    hits = store.search_interactions(embedding=axis(d))
    assert [h.similarity for h in hits] == pytest.approx([0.25], abs=1e-4)
    assert store.search_profiles(embedding=axis(d)) == []
    assert store.search_user_playbooks(embedding=axis(d)) == []
    assert len(store.search_profiles(embedding=axis(d), threshold=0.2)) == 1
    assert store.search_interactions(embedding=axis(d), threshold=0.3) == []


def test_sqlite_plans_use_the_user_index_and_one_fts_query(
    sqlite_factory: SessionFactory,
) -> None:
    """The user-filtered vector branch reads the user's rows through the (user_id, status,
    created_at) index, and the text branch runs MATCH once (never one FTS probe per row)."""
    d = dims(sqlite_factory)
    with sqlite_factory.writer() as s:
        for user in "ABCDEFGHIJKLMNOPQRST":
            _insert_profiles(s, d, user, 20, user == "A")
    # No ANALYZE: the plans must be right without statistics too.
    statements: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: Any) -> None:
        if statement.startswith("SELECT"):
            statements.append((statement, params))

    engine = sqlite_factory.writer_engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        with sqlite_factory.reader() as s:
            ops.search_profiles(s, "coffee", embedding=axis(d), user_id="A")
            ops.search_profiles(s, "coffee", embedding=axis(d))
            plans = [
                " | ".join(
                    str(row[3])
                    for row in s.connection().exec_driver_sql("EXPLAIN QUERY PLAN " + sql, p)
                )
                for sql, p in statements
                if "bm25" in sql or "vec_distance_cosine" in sql
            ]
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(plans) == 4
    filtered_text, filtered_vector, all_text, _all_vector = plans
    assert "ix_profiles_user_id_status_created_at" in filtered_vector
    for plan in (filtered_text, all_text):
        assert "VIRTUAL TABLE INDEX 0:M" in plan, plan  # MATCH without a rowid constraint
        assert "INDEX 0:=M" not in plan, plan
    assert "ix_profiles_user_id_status_created_at" in filtered_text
