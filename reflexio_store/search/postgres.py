"""One statement per search on PostgreSQL: both branches, the fusion and the rows.

    WITH text_candidates AS (   -- bounded: at most TEXT_CANDIDATES rows with every term,
        ... UNION ...           -- and as many with any term (GIN), filters applied
    ), text_hits AS (           -- ts_rank_cd over the candidates only, best `fetch`
        ...
    ), vector_hits AS (         -- HNSW walk (iterative scan, ef_search set in the statement),
        ...                     -- or an exact scan of one user's rows; threshold applied
    ), fused AS (               -- reciprocal rank fusion in SQL, best top_k
        ...
    )
    SELECT <entity columns>, score, similarity, text_rank FROM fused JOIN <table> ...

A narrowing filter (one user's current rows) is counted first through its btree index, stopping
one past the largest bound the search's branches use (the `narrow_size` CTE). At most
NARROW_EXACT_ROWS rows: every text match among them is ranked, else the bounded text candidates.
At most VECTOR_EXACT_ROWS rows: their vectors are scanned exactly, else a filtered HNSW walk that
fetches NARROWED_WALK_FETCH x top_k. The vector bound is higher because a filtered walk loses
recall as the user's share of the table falls (recall@10 at 1M profiles of 50 users: 0.78
fetching top_k, 0.885 fetching 4 x top_k; README, eighth session), while an exact scan costs a
few microseconds a row. Both plans of each branch are in the statement; one-time filters run
one of them.
The statement is sent unprepared so that PostgreSQL plans it for its own values every time.
It returns the count too; once a user has been counted at most half the bound, that user's
searches send the exact plan alone for a while (reflexio_store.search.narrow_sizes): no count,
and half the statement to plan.

Building this statement in SQLAlchemy costs about 3-4 ms of Python, more than half the server's
time for a small user: each built statement is kept per shape (entity, mode, kind of query
text, top_k, include_embedding, and the structure of every filter without its values), its
filter values renamed to named parameters, and later searches of that shape only bind their
values (`_cached_statement`). SQLAlchemy memoizes a statement object's cache key, so the
compiled form is found without walking the tree again.

The query vector is sent in binary (pgvector's wire format), not as 512 numbers in text.
Ranking every full-text match costs about 12 us a row (ts_rank_cd reads each row's tsvector);
a common term matches thousands of rows, so the text branch ranks a bounded candidate set:
rows holding every query term come first, then rows holding any term, TEXT_CANDIDATES each.
"""

from __future__ import annotations

import contextlib
import struct
import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg.adapt import Dumper
from psycopg.pq import Format
from sqlalchemy import (
    BindParameter,
    Float,
    Integer,
    Select,
    String,
    bindparam,
    false,
    func,
    literal,
    null,
    select,
    true,
    union,
    union_all,
)
from sqlalchemy.orm import Session, defer
from sqlalchemy.sql import visitors
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

from reflexio_store.search import narrow_sizes
from reflexio_store.search.fts_query import postgres_query
from reflexio_store.search.fusion import RRF_K
from reflexio_store.search.request import EntitySpec, SearchHit, SearchRequest
from reflexio_store.search.sql import all_terms_tsquery, cosine_distance, portable_tsquery
from reflexio_store.settings import DEFAULT_VECTOR_EXACT_ROWS

TEXT_CANDIDATES = 200
"""Rows ranked by the text branch, per kind (every term / any term), when the filters are not
selective. The benchmark's hybrid recall against ranking every match is in README."""
MAX_EF_SEARCH = 1000
NARROW_EXACT_ROWS = 5000
"""A narrowing filter (one user) selecting at most this many rows has every text match among
them ranked; more, the bounded text candidates."""
VECTOR_EXACT_ROWS = DEFAULT_VECTOR_EXACT_ROWS
"""A narrowing filter selecting at most this many rows has its vectors scanned exactly (recall
1.0; measured 84 ms p50 for 18,000 rows of a 1M-row table whose heap exceeds shared_buffers);
more, a filtered HNSW walk (see NARROWED_WALK_FETCH), whose recall@10 at 1M profiles measured
0.89 (worst query 0.0) fetching 4 x top_k. REFLEXIO_POSTGRES_VECTOR_EXACT_ROWS sets it per
session factory (session.info["vector_exact_rows"])."""
NARROWED_WALK_FETCH = 4
"""A walk through one user's rows returns this many times top_k rows, then keeps the nearest.
pgvector's iterative scan returns rows in relaxed order, so the first top_k it finds are not
the nearest top_k: at 250k profiles (50 users, walk forced) recall@10 was 0.88-0.93 fetching
top_k and 0.99 fetching 4 x top_k (README, eighth session)."""
MAX_SIZE_KEY_VALUES = 16
MAX_SIZE_KEY_CHARS = 4096
"""A narrowing filter with more values (or longer ones) is counted every time, not remembered."""
MAX_CACHED_STATEMENTS = 256
"""Built search statements kept (least recently used dropped first): one per shape."""


class QueryVector:
    """A query embedding on its way to PostgreSQL: sent in pgvector's binary format."""

    __slots__ = ("array",)

    def __init__(self, values: Sequence[float]) -> None:
        self.array = np.asarray(values, dtype=">f4")


class _QueryVectorDumper(Dumper):
    format = Format.BINARY
    # oid 0: the server takes the type from the context (`embedding <=> $1` is a vector).

    def dump(self, obj: QueryVector) -> bytes:
        return struct.pack(">HH", obj.array.size, 0) + obj.array.tobytes()


class _QueryVectorType(UserDefinedType[Any]):
    """Bind type of the query vector: no text conversion, the dumper above sends it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"

    def bind_processor(self, dialect: Any) -> None:
        return None


def _per_search(name: str, type_: Any) -> BindParameter[Any]:
    """A parameter every search supplies (`_values`). It holds no value of its own, so a cached
    statement keeps nothing of the search that built it (no query text, vector or user id) and
    a missing value is an error, never another search's."""
    return bindparam(name, type_=type_, required=True)


def _binary_vectors(session: Session) -> None:
    """Teach this connection's psycopg adapters to send QueryVector in binary (once each)."""
    fairy = session.connection().connection
    if not fairy.info.get("reflexio_query_vector"):
        fairy.dbapi_connection.adapters.register_dumper(  # type: ignore[union-attr]
            QueryVector, _QueryVectorDumper
        )
        fairy.info["reflexio_query_vector"] = True


def _text_hits(
    spec: EntitySpec,
    query: str,
    filters: Sequence[ColumnElement[bool]],
    limit: int,
    small: ColumnElement[bool] | None,
    exact: bool = False,
) -> Any:
    """Ranked full-text matches. `small`: the narrowing filter selects few rows, so every
    match among them is ranked; otherwise (or when `small` is None) a bounded candidate set.
    `exact`: the narrowing filter is known to select few rows: every match is ranked."""
    t = spec.table
    key = t.c[spec.key]
    text: ColumnElement[str] = _per_search("fts_query", String())
    any_terms = select(portable_tsquery(t, text)).scalar_subquery()
    matches_any = t.c.search_vector.op("@@")(any_terms)
    rank = func.ts_rank_cd(t.c.search_vector, any_terms, type_=Float())

    def ranked(*where: ColumnElement[bool]) -> Select[Any]:
        return (
            select(key.label("key"), rank.label("text_rank"))
            .where(*where)
            .order_by(rank.desc(), key)
            .limit(limit)
        )

    if exact:
        return _positioned(ranked(matches_any, *filters).subquery("text_best"))

    bound = _per_search("text_candidates", Integer())
    any_rows = select(key).where(matches_any, *filters).limit(bound)
    if " " in query:
        # Several terms: rows holding all of them first, then rows holding any.
        all_terms = select(all_terms_tsquery(t, text)).scalar_subquery()
        every_rows = select(key).where(t.c.search_vector.op("@@")(all_terms), *filters)
        both = union(every_rows.limit(bound), any_rows).subquery("text_candidates")
    else:
        # One term: "all terms" and "any term" are the same rows; look them up once.
        both = any_rows.subquery("text_candidates")
    bounded = ranked(key.in_(select(both.c[spec.key])))
    if small is None:
        best = bounded.subquery("text_best")
    else:
        # Exactly one side runs: the other is cut by a one-time filter on `small`.
        best = union_all(
            select(ranked(matches_any, *filters).subquery("text_all")).where(small),
            select(bounded.subquery("text_bounded")).where(~small),
        ).subquery("text_best")
    return _positioned(best)


def _positioned(best: Any) -> Any:
    """The text hits with their rank position (1 = best)."""
    return select(
        best.c.key,
        best.c.text_rank,
        func.row_number().over(order_by=(best.c.text_rank.desc(), best.c.key)).label("text_pos"),
    ).cte("text_hits")


def _vector_hits(
    spec: EntitySpec,
    request: SearchRequest,
    filters: Sequence[ColumnElement[bool]],
    limit: int,
    small: ColumnElement[bool] | None,
    exact: bool = False,
) -> Any:
    """The nearest rows within the threshold. `small`: the narrowing filter selects few rows,
    so they are scanned exactly; otherwise (or when `small` is None) an HNSW walk. `exact`:
    the narrowing filter is known to select few rows: only the exact scan is in the statement."""
    t = spec.table
    key = t.c[spec.key]
    query_vector = _per_search("query_embedding", _QueryVectorType())
    max_distance = _per_search("max_distance", Float())
    if exact:
        return _nearest(_exact_nearest(spec, query_vector, max_distance, filters, limit))
    walk_limit = _walk_limit(request, small is not None)
    # hnsw.ef_search and iterative scans are set by this statement for its transaction: the
    # settings row is computed first because the index scan depends on it (LATERAL), and
    # pgvector reads both settings when the scan starts. Iterative scans keep walking until
    # enough rows pass the filters.
    ef_setting = _per_search("ef_search", String())
    settings = select(
        func.set_config("hnsw.ef_search", ef_setting, True).label("ef_search"),
        func.set_config("hnsw.iterative_scan", "relaxed_order", True).label("iterative"),
    ).subquery("hnsw_settings")
    distance = cosine_distance(t.c.embedding, query_vector)
    walk = (
        select(key.label("key"), distance.label("distance"))
        .where(t.c.embedding.is_not(None), settings.c.ef_search.is_not(None), *filters)
        .order_by(distance)
        .limit(walk_limit)
        .lateral("walk")
    )
    walked = (
        select(walk.c.key, walk.c.distance)
        .select_from(settings)
        .join(walk, true())
        .where(walk.c.distance <= max_distance)
    )
    if small is None:
        scored = walked.subquery("nearest")
    else:
        # Exactly one side runs: the other is cut by a one-time filter on `small`.
        exact_rows = _exact_nearest(spec, query_vector, max_distance, filters, limit)
        scored = union_all(
            select(exact_rows).where(small),
            select(walked.subquery("nearest_walk")).where(~small),
        ).subquery("nearest")
    return _nearest(scored)


def _exact_nearest(
    spec: EntitySpec,
    query_vector: ColumnElement[Any],
    max_distance: ColumnElement[float],
    filters: Sequence[ColumnElement[bool]],
    limit: int,
) -> Any:
    """The nearest of the filtered rows by an exact scan. A selective filter (one user's rows)
    is cheaper and exact as a scan of those rows through their btree index than as an HNSW walk
    that discards other users' rows. MATERIALIZED keeps the planner from turning it back into an
    HNSW scan, and computes each distance once."""
    t = spec.table
    key = t.c[spec.key]
    rows = (
        select(
            key.label("key"),
            cosine_distance(t.c.embedding, query_vector).label("distance"),
        )
        .where(t.c.embedding.is_not(None), *filters)
        .cte("vector_candidates")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(rows.c.key, rows.c.distance)
        .where(rows.c.distance <= max_distance)
        .order_by(rows.c.distance, rows.c.key)
        .limit(limit)
        .subquery("nearest_exact")
    )


def _nearest(scored: Any) -> Any:
    """The vector hits with their rank position (1 = nearest)."""
    return select(
        scored.c.key,
        scored.c.distance,
        func.row_number().over(order_by=(scored.c.distance, scored.c.key)).label("vector_pos"),
    ).cte("vector_hits")


@dataclass(frozen=True)
class _NarrowSize:
    """The narrowing filter's size, counted once per statement (the `narrow_size` CTE)."""

    text_small: ColumnElement[bool]  # at most NARROW_EXACT_ROWS rows: rank every text match
    vector_small: ColumnElement[bool]  # at most VECTOR_EXACT_ROWS rows: scan vectors exactly
    rows: ColumnElement[int]  # counted up to one past the larger bound


def _narrow_size(narrow: Sequence[ColumnElement[bool]]) -> _NarrowSize | None:
    """How many rows the narrowing filter selects, counted through its index up to one past
    the larger of the two bounds, and whether each bound holds."""
    if not narrow:
        return None
    text_bound = _per_search("narrow_exact_rows", Integer())
    vector_bound = _per_search("vector_exact_rows", Integer())
    count_cap = _per_search("narrow_count_cap", Integer())
    capped = select(literal(1).label("one")).where(*narrow).limit(count_cap).subquery("capped")
    count = func.count()
    size = (
        select(
            (count <= text_bound).label("text_small"),
            (count <= vector_bound).label("vector_small"),
            count.label("rows"),
        )
        .select_from(capped)
        .cte("narrow_size")
    )
    return _NarrowSize(
        select(size.c.text_small).scalar_subquery(),
        select(size.c.vector_small).scalar_subquery(),
        select(size.c.rows).scalar_subquery(),
    )


def _fused(request: SearchRequest, text: Any, vector: Any) -> Select[Any]:
    """(key, score, similarity, text_rank, order...) of the best top_k, best first."""
    top_k = _per_search("top_k", Integer())
    if vector is None:
        return (
            select(
                text.c.key,
                text.c.text_rank.label("score"),
                null().label("distance"),
                text.c.text_rank,
                text.c.text_pos.label("first"),
                literal(0).label("second"),
            )
            .order_by(text.c.text_pos)
            .limit(top_k)
        )
    if text is None:
        return (
            select(
                vector.c.key,
                (1.0 - vector.c.distance).label("score"),
                vector.c.distance,
                null().label("text_rank"),
                vector.c.vector_pos.label("first"),
                literal(0).label("second"),
            )
            .order_by(vector.c.vector_pos)
            .limit(top_k)
        )
    text_missing = select(func.count() + 1).select_from(text).scalar_subquery()
    vector_missing = select(func.count() + 1).select_from(vector).scalar_subquery()
    k = literal(RRF_K)
    score = _per_search("text_weight", Float()) / (
        k + func.coalesce(text.c.text_pos, text_missing)
    ) + _per_search("vector_weight", Float()) / (
        k + func.coalesce(vector.c.vector_pos, vector_missing)
    )
    # Ties keep vector order, then text order (as reflexio_store.search.fusion).
    first = func.coalesce(vector.c.vector_pos, vector_missing + text.c.text_pos)
    return (
        select(
            func.coalesce(vector.c.key, text.c.key).label("key"),
            score.label("score"),
            vector.c.distance,
            text.c.text_rank,
            first.label("first"),
            literal(0).label("second"),
        )
        .select_from(vector)
        .join(text, vector.c.key == text.c.key, full=True)
        .order_by(score.desc(), first)
        .limit(top_k)
    )


def search(
    session: Session,
    spec: EntitySpec,
    request: SearchRequest,
    filters: Sequence[ColumnElement[bool]],
    narrow: Sequence[ColumnElement[bool]],
) -> list[SearchHit[Any]]:
    """The whole search as one statement (one round trip)."""
    query = None
    if request.mode in ("text", "hybrid"):
        query = postgres_query(request.text)
        if query is None and request.mode == "text":
            return []
    if request.mode in ("vector", "hybrid"):
        _binary_vectors(session)
    vector_bound = int(session.info.get("vector_exact_rows", VECTOR_EXACT_ROWS))
    found = _cached_statement(
        spec, request, query, filters, narrow, _database_of(session), vector_bound
    )
    with _planned_with_its_values(session):
        rows = session.execute(found.statement, found.values).all()
    if found.size_key is not None and not found.exact and rows:
        narrow_sizes.remember(found.size_key, int(rows[0][4]), found.values["narrow_count_cap"])
    return [
        SearchHit(
            item=row[0],
            score=float(row[1]),
            similarity=None if row[2] is None else 1.0 - float(row[2]),
            text_rank=None if row[3] is None else float(row[3]),
        )
        for row in rows
    ]


def _fetch(request: SearchRequest) -> int:
    return request.top_k if request.mode != "hybrid" else request.top_k * 4


def _walk_limit(request: SearchRequest, narrowed: bool) -> int:
    """Rows the HNSW walk returns. A walk filtered to one user's rows reads about limit / (that
    user's share of the table) index entries and returns them in relaxed order, so it fetches
    NARROWED_WALK_FETCH x top_k and the nearest of those are kept."""
    limit = _fetch(request)
    return max(limit, NARROWED_WALK_FETCH * request.top_k) if narrowed else limit


def _ef(request: SearchRequest, narrowed: bool) -> str:
    """hnsw.ef_search for the walk: the caller's, raised to the walk's limit (a setting's text)."""
    return str(max(request.ef_search, min(_walk_limit(request, narrowed), MAX_EF_SEARCH)))


def _values(
    request: SearchRequest, query: str | None, narrowed: bool, vector_bound: int
) -> dict[str, Any]:
    """The statement's named parameters that change from search to search."""
    values: dict[str, Any] = {"top_k": request.top_k}
    if query is not None:
        values.update(fts_query=query, text_candidates=TEXT_CANDIDATES)
    if request.mode != "text":
        values.update(
            query_embedding=QueryVector(request.embedding or ()),
            max_distance=1.0 - request.threshold,
            ef_search=_ef(request, narrowed),
        )
    if request.mode == "hybrid":
        values.update(text_weight=request.text_weight, vector_weight=request.vector_weight)
    if narrowed:
        values.update(
            narrow_exact_rows=NARROW_EXACT_ROWS,
            vector_exact_rows=vector_bound,
            narrow_count_cap=max(_branch_bounds(request, vector_bound)) + 1,
        )
    return values


class _Lifted:
    """Filter conditions with their bound values lifted out: `key` is their structure without
    the values (None when a condition has no cache key), `values` the values under names
    prefix_<condition>_<n>, and `renamed()` the same conditions reading those names (required
    parameters without values of their own)."""

    def __init__(self, conditions: Sequence[ColumnElement[bool]], prefix: str) -> None:
        self.conditions = conditions
        self.values: dict[str, Any] = {}
        self._names: list[list[tuple[BindParameter[Any], str]]] = []
        keys: list[Hashable] = []
        for j, condition in enumerate(conditions):
            cache_key = condition._generate_cache_key()
            if cache_key is None:
                self.key: Hashable | None = None
                return
            keys.append(cache_key.key)
            names = [(bind, f"{prefix}_{j}_{i}") for i, bind in enumerate(cache_key.bindparams)]
            self.values.update((name, bind.effective_value) for bind, name in names)
            self._names.append(names)
        self.key = tuple(keys)

    def renamed(self) -> list[ColumnElement[bool]]:
        renamed = []
        for condition, names in zip(self.conditions, self._names, strict=True):
            by_id = {
                id(bind): bindparam(
                    name,
                    type_=bind.type,
                    expanding=bind.expanding,
                    literal_execute=bind.literal_execute,
                    required=True,
                )
                for bind, name in names
            }
            opts: dict[str, Any] = {}
            renamed.append(visitors.replacement_traverse(condition, opts, _Swap(by_id)))
        return renamed


class _Swap:
    """replacement_traverse's callback: each listed bound parameter (by identity) swapped."""

    def __init__(self, by_id: dict[int, BindParameter[Any]]) -> None:
        self.by_id = by_id

    def __call__(self, element: Any, **kw: Any) -> Any:
        return self.by_id.get(id(element))


_statements: OrderedDict[Hashable, Select[Any]] = OrderedDict()
_statements_lock = threading.Lock()


@dataclass(frozen=True)
class _Found:
    statement: Select[Any]
    values: dict[str, Any]
    size_key: Hashable | None
    """Names the narrowing filter's rows in narrow_sizes (None: no narrowing, or uncacheable)."""
    exact: bool
    """The statement scans the narrowed rows exactly, without counting them first."""


def _database_of(session: Session) -> Hashable:
    """Which database and schema the session reads: part of every narrow_sizes key."""
    bind = session.get_bind()
    schemas = bind.get_execution_options().get("schema_translate_map") or {}
    # The default schema's entry only: SQLAlchemy adds a "_none" alias of it to the map after
    # the first execution, which must not make the second search's key another one.
    return (bind.engine.url, str(schemas.get(None, schemas.get("_none"))))


def _size_key(
    database: Hashable, spec: EntitySpec, lifted: _Lifted, positions: tuple[int, ...]
) -> Hashable | None:
    """The narrowing conditions' structure and values in this database (None: unhashable)."""
    assert lifted.key is not None
    structure = tuple(lifted.key[j] for j in positions)  # type: ignore[index]
    prefixes = tuple(f"filter_{j}_" for j in positions)
    values = tuple(
        (name, tuple(value) if isinstance(value, list) else value)
        for name, value in lifted.values.items()
        if name.startswith(prefixes)
    )
    flat = [v for _, value in values for v in (value if isinstance(value, tuple) else (value,))]
    if len(flat) > MAX_SIZE_KEY_VALUES or sum(len(str(v)) for v in flat) > MAX_SIZE_KEY_CHARS:
        return None  # a long list of users: not worth remembering (memory)
    key = (database, spec.model, structure, values)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _cached_statement(
    spec: EntitySpec,
    request: SearchRequest,
    query: str | None,
    filters: Sequence[ColumnElement[bool]],
    narrow: Sequence[ColumnElement[bool]],
    database: Hashable,
    vector_bound: int,
) -> _Found:
    """The statement for this search's shape (built once) and the values to run it with.

    The narrowing conditions are some of `filters` themselves (the same objects), so they are
    lifted once, as filters, and the shape records which of them narrow. When narrow_sizes
    knows the narrowed rows to be few, the shape is the exact plan alone."""
    values = _values(request, query, bool(narrow), vector_bound)
    lifted = _Lifted(filters, "filter")
    positions = _positions(narrow, filters)
    if lifted.key is None or positions is None:
        # A condition SQLAlchemy cannot cache, or a narrowing condition that is not one of the
        # filters: built for this search alone, values inline.
        return _Found(_statement(spec, request, query, filters, narrow), values, None, False)
    size_key = _size_key(database, spec, lifted, positions) if positions else None
    exact = size_key is not None and narrow_sizes.known_small(
        size_key, min(_branch_bounds(request, vector_bound))
    )
    text_kind = None if query is None else ("terms" if " " in query else "term")
    shape = (
        spec.model,
        spec.key,
        request.mode,
        text_kind,
        request.top_k,
        request.include_embedding,
        lifted.key,
        positions,
        exact,
    )
    with _statements_lock:
        stmt = _statements.get(shape)
        if stmt is not None:
            _statements.move_to_end(shape)
    if stmt is None:
        renamed = lifted.renamed()
        stmt = _statement(spec, request, query, renamed, [renamed[i] for i in positions], exact)
        with _statements_lock:
            _statements[shape] = stmt
            while len(_statements) > MAX_CACHED_STATEMENTS:
                _statements.popitem(last=False)
    values.update(lifted.values)
    return _Found(stmt, values, size_key, exact)


def _branch_bounds(request: SearchRequest, vector_bound: int) -> list[int]:
    """The narrowed-size bounds of the branches this search runs: the count stops one past
    the largest, and every branch is exact up to the smallest."""
    bounds = []
    if request.mode != "vector":
        bounds.append(NARROW_EXACT_ROWS)
    if request.mode != "text":
        bounds.append(vector_bound)
    return bounds


def _positions(
    narrow: Sequence[ColumnElement[bool]], filters: Sequence[ColumnElement[bool]]
) -> tuple[int, ...] | None:
    """Where each narrowing condition is among the filters (by identity), or None."""
    index = {id(condition): i for i, condition in enumerate(filters)}
    found = tuple(index.get(id(condition), -1) for condition in narrow)
    return None if -1 in found else found


def _statement(
    spec: EntitySpec,
    request: SearchRequest,
    query: str | None,
    filters: Sequence[ColumnElement[bool]],
    narrow: Sequence[ColumnElement[bool]],
    exact: bool = False,
) -> Select[Any]:
    """The search's statement: entity rows with score, distance and text rank, best first.
    `exact`: the narrowing filter is known to select few rows (no count, no walk)."""
    fetch = _fetch(request)
    text: Any = None
    vector: Any = None
    size = None if exact else _narrow_size(narrow)
    if query is not None:
        text = _text_hits(
            spec, query, filters, fetch, None if size is None else size.text_small, exact
        )
    if request.mode in ("vector", "hybrid"):
        small = None if size is None else size.vector_small
        vector = _vector_hits(spec, request, filters, fetch, small, exact)
    if request.mode == "hybrid" and text is None:
        # Nothing searchable in the text: the vector branch alone, ranked as fused.
        key = spec.table.c[spec.key]
        text = (
            select(
                key.label("key"),
                literal(0.0, Float()).label("text_rank"),
                literal(0, Integer()).label("text_pos"),
            )
            .where(false())
            .cte("text_hits")
        )
    fused = _fused(request, text, vector).subquery("fused")
    model = spec.model
    key = getattr(model, spec.key)
    columns: list[Any] = [model, fused.c.score, fused.c.distance, fused.c.text_rank]
    if size is not None:
        columns.append(size.rows.label("narrow_rows"))  # remembered by `search`
    stmt = (
        select(*columns)
        .join(fused, key == fused.c.key)
        .order_by(fused.c.score.desc(), fused.c.first)
    )
    if not request.include_embedding:
        stmt = stmt.options(defer(model.embedding, raiseload=True))
    return stmt


@contextlib.contextmanager
def _planned_with_its_values(session: Session) -> Iterator[None]:
    """Send the search unprepared, so PostgreSQL plans it for these values every time.

    psycopg prepares a statement after 5 runs, and after 5 more PostgreSQL may switch to a
    generic plan that cannot see which user, how many rows or which branch applies: measured
    at 100k profiles over 5 users, user-filtered hybrid went from 13 ms to 39 ms a search.
    Planning costs about 1-3 ms; a wrong plan costs far more."""
    raw = session.connection().connection.dbapi_connection
    before = getattr(raw, "prepare_threshold", None)
    if before is None:
        yield
        return
    raw.prepare_threshold = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        raw.prepare_threshold = before  # type: ignore[union-attr]
