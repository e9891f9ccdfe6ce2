"""The search engine shared by every searched entity.

One round trip per branch, each branch selecting only (key, score) over the filtered rows, then
one query loading the final <= top_k rows by key:

- text, SQLite: `<table>_fts MATCH :q` joined to the table by rowid, ordered by bm25.
- text, PostgreSQL: `search_vector @@ websearch_to_tsquery('english', :q)` (GIN), ts_rank_cd.
- vector, SQLite: `vec_distance_cosine(embedding, :q)` over the filtered rows (an indexed user
  filter narrows them first), threshold and order in SQL.
- vector, PostgreSQL: `ORDER BY embedding <=> :q LIMIT n` on the HNSW index, with
  hnsw.ef_search and hnsw.iterative_scan set for the transaction (SET LOCAL), so filtered
  searches still fill the list; an outer query applies the threshold and re-orders exactly.
  With a selective filter (one user's rows) the branch is an exact scan of those rows instead.
- hybrid: both branches over-fetch (4 x top_k) and are fused by reciprocal rank fusion.

Every filter is part of each branch's WHERE clause, before ordering and LIMIT.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from sqlalchemy import Float, Table, bindparam, column, func, literal_column, select, table
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.errors import ValidationError
from reflexio_store.search.fts_query import fts5_query, postgres_query
from reflexio_store.search.fusion import RRF_K, reciprocal_rank_fusion
from reflexio_store.search.sql import cosine_distance
from reflexio_store.types import Embedding
from reflexio_store.validation import check_embedding

T = TypeVar("T")
SearchMode = Literal["text", "vector", "hybrid"]
MODES: tuple[str, ...] = ("text", "vector", "hybrid")

MAX_TOP_K = 1000
OVERFETCH = 4
"""Each hybrid branch fetches OVERFETCH x top_k candidates before fusion."""
DEFAULT_EF_SEARCH = 400
"""hnsw.ef_search when the caller gives none: recall@10 0.94 at 200 and 0.99 at 400 on the
benchmark's clustered 100k profiles (m=16, ef_construction=64), for about 1 ms more per query."""
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


@dataclass(frozen=True, slots=True)
class SearchHit(Generic[T]):
    """One search result.

    score: the fused RRF score in hybrid mode, the similarity in vector mode, the text rank in
    text mode; higher is better. similarity: 1 - cosine distance, when the row came from the
    vector branch. text_rank: ts_rank_cd on PostgreSQL, -bm25 on SQLite (higher is better), when
    the row came from the text branch.
    """

    item: T
    score: float
    similarity: float | None = None
    text_rank: float | None = None


@dataclass(frozen=True)
class EntitySpec:
    """What the engine needs to know of one searched table."""

    model: type[Any]
    key: str
    """The integer key: FTS5 rowid on SQLite."""
    fulltext: bool = True
    """False for tables searched by vector only."""

    @property
    def table(self) -> Table:
        return cast(Table, self.model.__table__)

    @property
    def fts_name(self) -> str:
        return f"{self.table.name}_fts"


@dataclass(frozen=True)
class SearchRequest:
    """Validated search parameters."""

    mode: SearchMode
    text: str | None
    embedding: list[float] | None
    top_k: int
    threshold: float
    text_weight: float
    vector_weight: float
    ef_search: int
    include_embedding: bool


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{field} must be a number, got {type(value).__name__}.")
    number = float(value)
    if not math.isfinite(number):
        raise ValidationError(f"{field} must be a finite number, got {value!r}.")
    return number


def _integer(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, got {type(value).__name__}.")
    if not low <= value <= high:
        raise ValidationError(f"{field} must be between {low} and {high}, got {value}.")
    return value


def build_request(
    session: Session,
    *,
    query: str | None,
    embedding: Any,
    mode: str | None,
    top_k: int,
    threshold: float,
    text_weight: float,
    vector_weight: float,
    ef_search: int,
    include_embedding: bool,
    fulltext: bool = True,
) -> SearchRequest:
    """Check every search argument; raise ValidationError naming the bad one."""
    if query is not None and not isinstance(query, str):
        raise ValidationError(f"query must be text, got {type(query).__name__}.")
    if mode is None:
        mode = (
            "hybrid"
            if (query is not None and embedding is not None)
            else ("text" if embedding is None else "vector")
        )
    if mode not in MODES:
        raise ValidationError(f"Unknown search mode {mode!r}; expected one of: {', '.join(MODES)}.")
    if not fulltext and mode != "vector":
        raise ValidationError(
            f"This table is searched by vector only; mode {mode!r} is not offered."
        )
    top_k = _integer(top_k, "top_k", 1, MAX_TOP_K)
    threshold = _number(threshold, "threshold")
    if not -1.0 <= threshold <= 1.0:
        raise ValidationError(f"threshold is a cosine similarity in [-1, 1], got {threshold}.")
    text_weight = _number(text_weight, "text_weight")
    vector_weight = _number(vector_weight, "vector_weight")
    if text_weight < 0 or vector_weight < 0:
        raise ValidationError("text_weight and vector_weight must not be negative.")
    ef_search = _integer(ef_search, "ef_search", 1, MAX_EF_SEARCH)
    vector = check_embedding(embedding, embedding_dimensions(session))
    if mode in ("vector", "hybrid") and vector is None:
        raise ValidationError(f"Search mode {mode!r} needs an embedding (the query vector).")
    if mode == "text" and query is None:
        raise ValidationError("Search mode 'text' needs a query text.")
    return SearchRequest(
        mode=cast(SearchMode, mode),
        text=query,
        embedding=vector,
        top_k=top_k,
        threshold=threshold,
        text_weight=text_weight,
        vector_weight=vector_weight,
        ef_search=ef_search,
        include_embedding=bool(include_embedding),
    )


def embedding_dimensions(session: Session) -> int:
    """The deployment's vector size (as reflexio_store.store._operation.embedding_dimensions;
    not imported from there because importing reflexio_store.store imports this module)."""
    return int(session.info.get("embedding_dimensions", 512))


def backend(session: Session) -> str:
    return str(session.info.get("backend") or session.get_bind().dialect.name)


# -- branches --------------------------------------------------------------------------------


def _text_branch(
    session: Session,
    spec: EntitySpec,
    text: str | None,
    filters: Sequence[ColumnElement[bool]],
    limit: int,
    narrow: Sequence[ColumnElement[bool]],
) -> list[tuple[Any, float]]:
    """(key, text rank) best first; [] when the text has nothing searchable."""
    t = spec.table
    key = t.c[spec.key]
    if backend(session) == "postgresql":
        q = postgres_query(text)
        if q is None:
            return []
        tsquery = func.websearch_to_tsquery(
            literal_column("'english'::regconfig"), bindparam("fts_query", q)
        )
        rank = func.ts_rank_cd(t.c.search_vector, tsquery, type_=Float()).label("rank")
        stmt = (
            select(key, rank)
            .where(t.c.search_vector.op("@@")(tsquery), *filters)
            .order_by(rank.desc(), key)
            .limit(limit)
        )
        return [(row[0], float(row[1])) for row in session.execute(stmt)]
    match = fts5_query(text)
    if match is None:
        return []
    fts = table(spec.fts_name, column("rowid"))
    hidden: ColumnElement[Any] = literal_column(spec.fts_name)
    bm25 = func.bm25(hidden, type_=Float()).label("bm25")
    matches = hidden.match(bindparam("fts_query", match))
    # `rowid + 0` stops SQLite from probing the FTS index once per base row (one full-text
    # query per row, very slow); the MATCH runs once, and bm25 is computed only for matches
    # that pass the filters.
    rowid = fts.c.rowid + 0
    stmt = (
        select(key, bm25)
        .select_from(fts.join(t, key == rowid))
        .where(matches, *filters)
        .order_by(bm25, key)
        .limit(limit)
    )
    if narrow:
        # Selective, index-covered filters (e.g. one user's current rows through the (user_id,
        # status, created_at) index) become an in-memory key set (with a Bloom filter) that each
        # match is tested against first: only matches in the set are joined to their row.
        stmt = stmt.where(rowid.in_(select(key).where(*narrow)))
    return [(row[0], -float(row[1])) for row in session.execute(stmt)]


def _vector_branch(
    session: Session,
    spec: EntitySpec,
    request: SearchRequest,
    filters: Sequence[ColumnElement[bool]],
    limit: int,
    narrow: Sequence[ColumnElement[bool]] = (),
) -> list[tuple[Any, float]]:
    """(key, cosine distance) nearest first, within the similarity threshold."""
    t = spec.table
    key = t.c[spec.key]
    query_vector = bindparam(
        "query_embedding", request.embedding, type_=Embedding(embedding_dimensions(session))
    )
    distance = cosine_distance(t.c.embedding, query_vector).label("distance")
    max_distance = bindparam("max_distance", 1.0 - request.threshold, type_=Float())
    if backend(session) == "postgresql" and narrow:
        # A selective filter (one user's rows) is cheaper and exact as a scan of those rows
        # through their btree index than as an HNSW walk that discards other users' rows.
        # MATERIALIZED keeps the planner from turning it back into an HNSW scan.
        candidates = (
            select(key.label("key"), t.c.embedding.label("embedding"))
            .where(t.c.embedding.is_not(None), *filters)
            .cte("candidates")
            .prefix_with("MATERIALIZED")
        )
        exact = cosine_distance(candidates.c.embedding, query_vector).label("distance")
        stmt = (
            select(candidates.c.key, exact)
            .where(exact <= max_distance)
            .order_by(exact, candidates.c.key)
            .limit(limit)
        )
    elif backend(session) == "postgresql":
        ef = max(request.ef_search, min(limit, MAX_EF_SEARCH))
        session.execute(
            select(
                func.set_config("hnsw.ef_search", str(ef), True),
                func.set_config("hnsw.iterative_scan", "relaxed_order", True),
            )
        )
        nearest = (
            select(key.label("key"), distance)
            .where(t.c.embedding.is_not(None), *filters)
            .order_by(distance)
            .limit(limit)
            .subquery("nearest")
        )
        stmt = (
            select(nearest.c.key, nearest.c.distance)
            .where(nearest.c.distance <= max_distance)
            .order_by(nearest.c.distance, nearest.c.key)
        )
    else:
        # LIMIT -1 keeps SQLite from flattening the subquery, so each row's distance is
        # computed once (not again for the threshold test).
        scored = (
            select(key.label("key"), distance)
            .where(t.c.embedding.is_not(None), *filters)
            .limit(-1)
            .subquery("scored")
        )
        stmt = (
            select(scored.c.key, scored.c.distance)
            .where(scored.c.distance <= max_distance)
            .order_by(scored.c.distance, scored.c.key)
            .limit(limit)
        )
    return [(row[0], float(row[1])) for row in session.execute(stmt)]


# -- the search ------------------------------------------------------------------------------


def run_search(
    session: Session,
    spec: EntitySpec,
    request: SearchRequest,
    filters: Sequence[ColumnElement[bool]],
    *,
    narrow: Sequence[ColumnElement[bool]] = (),
) -> list[SearchHit[Any]]:
    """Run `request` over `spec`'s rows that pass `filters`; best first, at most top_k hits.

    narrow: the part of `filters` that selects few rows through an index (one user's current
    rows, one request's); on SQLite the text branch tests full-text matches against that key set
    before joining them to their rows. Empty when no such filter is given.
    """
    top_k = request.top_k
    text_hits: list[tuple[Any, float]] = []
    vector_hits: list[tuple[Any, float]] = []
    if request.mode == "text":
        text_hits = _text_branch(session, spec, request.text, filters, top_k, narrow)
        ranked = [(k, s) for k, s in text_hits]
    elif request.mode == "vector":
        vector_hits = _vector_branch(session, spec, request, filters, top_k, narrow)
        ranked = [(k, 1.0 - d) for k, d in vector_hits]
    else:
        fetch = top_k * OVERFETCH
        text_hits = _text_branch(session, spec, request.text, filters, fetch, narrow)
        vector_hits = _vector_branch(session, spec, request, filters, fetch, narrow)
        ranked = reciprocal_rank_fusion(
            [k for k, _ in text_hits],
            [k for k, _ in vector_hits],
            text_weight=request.text_weight,
            vector_weight=request.vector_weight,
            k=RRF_K,
        )[:top_k]
    if not ranked:
        return []
    text_rank = dict(text_hits)
    similarity = {k: 1.0 - d for k, d in vector_hits}
    keys = [k for k, _ in ranked]
    key_attr = getattr(spec.model, spec.key)
    stmt = select(spec.model).where(key_attr.in_(keys))
    if not request.include_embedding:
        stmt = stmt.options(defer(spec.model.embedding, raiseload=True))
    rows = {getattr(obj, spec.key): obj for obj in session.scalars(stmt)}
    return [
        SearchHit(
            item=rows[k],
            score=score,
            similarity=similarity.get(k),
            text_rank=text_rank.get(k),
        )
        for k, score in ranked
        if k in rows
    ]
