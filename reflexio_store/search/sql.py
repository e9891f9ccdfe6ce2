"""SQL constructs that differ between PostgreSQL and SQLite, compiled per dialect.

`cosine_distance(embedding, query)`: pgvector's `<=>` (served by the HNSW vector_cosine_ops
index) on PostgreSQL; sqlite-vec's `vec_distance_cosine` on SQLite.

JSON list containment filters reuse reflexio_store.store.memories.json_list_contains.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class cosine_distance(FunctionElement[float]):
    """Cosine distance (1 - cosine similarity) between a vector column and a vector value."""

    type = Float()
    inherit_cache = True
    name = "cosine_distance"


@compiles(cosine_distance, "postgresql")
def _cosine_distance_pg(element: cosine_distance, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = element.clauses
    return f"({compiler.process(left, **kw)} <=> {compiler.process(right, **kw)})"


@compiles(cosine_distance)
def _cosine_distance_sqlite(element: cosine_distance, compiler: SQLCompiler, **kw: Any) -> str:
    left, right = element.clauses
    return f"vec_distance_cosine({compiler.process(left, **kw)}, {compiler.process(right, **kw)})"
