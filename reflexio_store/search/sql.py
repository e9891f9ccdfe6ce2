"""SQL constructs that differ between PostgreSQL and SQLite, compiled per dialect.

`cosine_distance(embedding, query)`: pgvector's `<=>` (served by the HNSW vector_cosine_ops
index) on PostgreSQL; sqlite-vec's `vec_distance_cosine` on SQLite.

JSON list containment filters reuse reflexio_store.dialect.json_list_contains.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
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


class portable_tsquery(FunctionElement[Any]):
    """PostgreSQL: the OR of the lexemes `reflexio_fts_document(text)` makes of a query text
    (revision 0004), so a query is split, folded and stemmed exactly as stored text is.

    portable_tsquery(table, text): `table` is the searched table; its schema (after the
    engine's schema_translate_map) is where the function lives.
    """

    inherit_cache = True
    name = "portable_tsquery"
    operator = "|"

    def __init__(self, table: Table, text: ColumnElement[Any]) -> None:
        self.table = table
        super().__init__(text)


class all_terms_tsquery(portable_tsquery):
    """As portable_tsquery, with every lexeme required (AND)."""

    inherit_cache = True
    name = "all_terms_tsquery"
    operator = "&"


@compiles(portable_tsquery, "postgresql")
@compiles(all_terms_tsquery, "postgresql")
def _portable_tsquery_pg(element: portable_tsquery, compiler: SQLCompiler, **kw: Any) -> str:
    (text,) = element.clauses
    preparer = compiler.preparer
    schema = preparer.schema_for_object(element.table)
    function = "reflexio_fts_document"
    if schema:
        function = f"{preparer.quote_schema(schema)}.{function}"
    lexemes = f"unnest(tsvector_to_array({function}({compiler.process(text, **kw)})))"
    joined = f"string_agg(quote_literal(l), ' {element.operator} ')"
    # Only identifiers and compiled SQL are interpolated; the query text is a bound parameter.
    return f"(SELECT {joined} FROM {lexemes} AS l)::tsquery"  # noqa: S608
