"""The search engine shared by every searched entity.

One round trip per branch, each branch selecting only (key, score) over the filtered rows, then
one query loading the final <= top_k rows by key:

- text, SQLite: `<table>_fts MATCH :q` joined to the table by rowid, ordered by bm25.
- text, PostgreSQL: `search_vector @@ <the OR of the query's lexemes>` (GIN), ts_rank_cd.
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

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
from sqlalchemy import Float, bindparam, column, func, literal_column, select, table
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql.elements import ColumnElement

from reflexio_store.dialect import dialect_name
from reflexio_store.errors import ValidationError
from reflexio_store.search import postgres, vector_index
from reflexio_store.search.fts_query import fts5_query
from reflexio_store.search.fusion import RRF_K, reciprocal_rank_fusion
from reflexio_store.search.request import EntitySpec, SearchHit, SearchMode, SearchRequest
from reflexio_store.search.sql import cosine_distance
from reflexio_store.types import Embedding
from reflexio_store.validation import (
    FLOAT_MAX,
    check_embedding,
    choice,
    optional_query,
    require_bool,
    require_int,
    require_number,
)

MODES: tuple[str, ...] = ("text", "vector", "hybrid")

MAX_TOP_K = 1000
OVERFETCH = 4
"""Each hybrid branch fetches OVERFETCH x top_k candidates before fusion."""
DEFAULT_EF_SEARCH = 400
"""hnsw.ef_search when the caller gives none: recall@10 0.94 at 200 and 0.99 at 400 on the
benchmark's clustered 100k profiles (m=16, ef_construction=64), for about 1 ms more per query."""
MAX_EF_SEARCH = 1000  # pgvector's upper bound for hnsw.ef_search


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
    query = optional_query(query)
    if mode is None:
        mode = (
            "hybrid"
            if (query is not None and embedding is not None)
            else ("text" if embedding is None else "vector")
        )
    mode = choice(mode, MODES, "search mode")
    if not fulltext and mode != "vector":
        raise ValidationError(
            f"This table is searched by vector only; mode {mode!r} is not offered."
        )
    top_k = require_int(top_k, "top_k", 1, MAX_TOP_K)
    # A cosine similarity.
    threshold = require_number(threshold, "threshold", -1.0, 1.0)
    text_weight = require_number(text_weight, "text_weight", 0.0, FLOAT_MAX)
    vector_weight = require_number(vector_weight, "vector_weight", 0.0, FLOAT_MAX)
    ef_search = require_int(ef_search, "ef_search", 1, MAX_EF_SEARCH)
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
        include_embedding=require_bool(include_embedding, "include_embedding"),
    )


def embedding_dimensions(session: Session) -> int:
    """The deployment's vector size (as reflexio_store.store._operation.embedding_dimensions;
    not imported from there because importing reflexio_store.store imports this module)."""
    return int(session.info.get("embedding_dimensions", 512))


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


INDEX_OVERFETCH = 4
MIN_INDEX_CANDIDATES = 100
MAX_INDEX_CANDIDATES = 20_000
"""Candidates asked of the in-process vector index (SQLite): at least 4 x the rows wanted, at
least 100; widened 8x while filters leave too few, up to 20,000, then the exact scan."""


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

    def exact(among: list[int] | None = None) -> list[tuple[Any, float]]:
        # LIMIT -1 keeps SQLite from flattening the subquery, so each row's distance is
        # computed once (not again for the threshold test).
        where = [t.c.embedding.is_not(None), *filters]
        if among is not None:
            where.append(key.in_(among))
        scored = select(key.label("key"), distance).where(*where).limit(-1).subquery("scored")
        stmt = (
            select(scored.c.key, scored.c.distance)
            .where(scored.c.distance <= max_distance)
            .order_by(scored.c.distance, scored.c.key)
            .limit(limit)
        )
        return [(row[0], float(row[1])) for row in session.execute(stmt)]

    if narrow or request.embedding is None:
        return exact()
    # Not narrowed by an indexed filter: the in-process index proposes candidates, SQL ranks
    # them exactly with every filter. Too few survive the filters: ask for more, and fall
    # back to the exact scan once the candidates would be most of the table.
    query = np.asarray(request.embedding, dtype=np.float32)
    norm = float(np.linalg.norm(query))
    count = max(limit * INDEX_OVERFETCH, MIN_INDEX_CANDIDATES)
    while norm > 0:
        found = vector_index.candidates(
            session.connection(), t.name, spec.key, query.size, query / norm, count
        )
        if found is None:
            break
        hits = exact(found.keys)
        worst = found.similarities[-1] if found.similarities else -1.0
        if len(hits) >= limit or found.exhausted or worst < request.threshold - 1e-6:
            return hits
        count *= 8
        if count > MAX_INDEX_CANDIDATES:
            break
    return exact()


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
    if dialect_name(session) == "postgresql":
        return postgres.search(session, spec, request, filters, narrow)
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
