"""Reflexio's choice of search mode, shared by every search of the adapter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from reflexio.models.config_schema import SearchMode

from reflexio_store.search.engine import MAX_TOP_K

Mode = Literal["text", "vector", "hybrid"]


def pick_mode(
    requested: SearchMode,
    query: str | None,
    embedding: Sequence[float] | None,
    *,
    interactions: bool = False,
) -> Mode | None:
    """The mode Reflexio's own storage runs for this request; None means "no search: list".

    Hybrid and vector fall back to full text without a query embedding; a request with an
    embedding and no query text is a vector search (for interactions only in hybrid or vector
    mode); hybrid needs both.
    """
    has_query = bool(query)
    has_embedding = bool(embedding)
    mode = requested
    if mode in (SearchMode.HYBRID, SearchMode.VECTOR) and not has_embedding:
        mode = SearchMode.FTS
    if interactions:
        if mode in (SearchMode.VECTOR, SearchMode.HYBRID) and has_embedding and not has_query:
            return "vector"
    elif mode == SearchMode.VECTOR and has_embedding:
        return "vector"
    if has_query:
        return "hybrid" if mode == SearchMode.HYBRID and has_embedding else "text"
    if has_embedding and not interactions:
        return "vector"
    return None


def widened(top_k: int) -> int:
    """How many hits to fetch when some filters are applied after the search."""
    return min(MAX_TOP_K, max(top_k * 10, 100))
