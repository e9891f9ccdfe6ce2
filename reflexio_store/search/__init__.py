"""Text, vector and hybrid search over SQLite (FTS5 + sqlite-vec) and PostgreSQL (tsvector +
pgvector). Store operations are in reflexio_store.store.search; this package holds the engine."""

from reflexio_store.search.engine import (
    DEFAULT_EF_SEARCH,
    MAX_TOP_K,
    OVERFETCH,
    run_search,
)
from reflexio_store.search.fts_query import fts5_query, postgres_query, query_terms, search_terms
from reflexio_store.search.fusion import RRF_K, reciprocal_rank_fusion
from reflexio_store.search.request import EntitySpec, SearchHit, SearchMode
from reflexio_store.search.sql import cosine_distance

__all__ = [
    "DEFAULT_EF_SEARCH",
    "MAX_TOP_K",
    "OVERFETCH",
    "RRF_K",
    "EntitySpec",
    "SearchHit",
    "SearchMode",
    "cosine_distance",
    "fts5_query",
    "postgres_query",
    "query_terms",
    "reciprocal_rank_fusion",
    "run_search",
    "search_terms",
]
