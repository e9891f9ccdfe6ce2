"""The shapes the search engine works with: a validated request, a searched table, a hit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, cast

from sqlalchemy import Table

T = TypeVar("T")
SearchMode = Literal["text", "vector", "hybrid"]


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
