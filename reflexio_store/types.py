"""Column types that mean the same on SQLite and PostgreSQL.

- `UTCDateTime`: aware UTC datetimes in and out; naive values are refused.
- `JSONType`: JSONB on PostgreSQL, JSON on SQLite; Python objects come back on both.
- `Embedding(dim)`: pgvector `vector(dim)` on PostgreSQL; packed float32 bytes on SQLite (the
  format sqlite-vec reads), never JSON text. PostgreSQL sends selected vectors in pgvector's
  binary form (`vector_send`): parsing 512 numbers from text cost about 110 us a row, more than
  the rest of a primary-key read. Both databases return the stored float32 values exactly.
- `SearchVector`: the type of the generated full-text column (tsvector on PostgreSQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import JSON, BigInteger, DateTime, Integer, LargeBinary, Text
from sqlalchemy.dialects.postgresql import JSONB, TSVECTOR
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, TypeEngine

from reflexio_store.validation import as_vector, check_json, require_aware


class JSONValue(TypeDecorator[Any]):
    """JSONB on PostgreSQL, JSON on SQLite; Python objects in and out on both."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(JSON())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        # The store checked its inputs already; this also covers rows written through the models.
        return check_json(value, "JSON value")


JSONType = JSONValue()
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
"""A 64-bit key; INTEGER on SQLite so that it aliases the rowid (stable across VACUUM)."""


class UTCDateTime(TypeDecorator[datetime]):
    """timestamptz on PostgreSQL; ISO text in UTC on SQLite. Always aware UTC in Python."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = require_aware(value, "datetime value")
        if dialect.name == "sqlite":
            # Stored without offset so that text comparison orders correctly.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class _StoredVector(Vector):
    """pgvector's type, minus its text parser: selected values arrive as vector_send bytes."""

    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: Any) -> None:
        return None


class _VectorOut(FunctionElement[Any]):
    """A selected embedding as the driver should send it (see `Embedding.column_expression`)."""

    name = "vector_out"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], type_: TypeEngine[Any]) -> None:
        super().__init__(column)
        self.type = type_


@compiles(_VectorOut)
def _vector_out(element: _VectorOut, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)  # SQLite: the float32 blob as stored


@compiles(_VectorOut, "postgresql")
def _vector_out_postgres(element: _VectorOut, compiler: SQLCompiler, **kw: Any) -> str:
    return f"vector_send({compiler.process(element.clauses, **kw)})"


_PG_HEADER = 4
"""vector_send's header: int16 dimensions, int16 unused; then big-endian float4 values."""


class Embedding(TypeDecorator[Sequence[float]]):
    """A fixed-size float vector: pgvector on PostgreSQL, float32 blob on SQLite."""

    impl = LargeBinary
    cache_ok = True

    def column_expression(self, colexpr: ColumnElement[Any]) -> ColumnElement[Any]:
        return _VectorOut(colexpr, self)

    def __init__(self, dimensions: int | None = None) -> None:
        # Models declare no size: the size is a deployment setting (REFLEXIO_EMBEDDING_DIMENSIONS)
        # fixed in the schema by the first migration and checked by the store on every write.
        super().__init__()
        self.dimensions = dimensions

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(_StoredVector(self.dimensions))
        return dialect.type_descriptor(LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        array = as_vector(value, self.dimensions)
        if dialect.name == "postgresql":
            return array
        return array.tobytes()

    def process_result_value(self, value: Any, dialect: Dialect) -> list[float] | None:
        if value is None:
            return None
        if isinstance(value, (bytes, bytearray, memoryview)):
            if dialect.name == "postgresql":
                array = np.frombuffer(value, dtype=">f4", offset=_PG_HEADER)
            else:
                array = np.frombuffer(value, dtype=np.float32)
            floats: list[float] = array.tolist()
            return floats
        if isinstance(value, str):  # a vector's text form (SQL text selected without the type)
            value = np.array(value.strip("[]").split(","), dtype=np.float32)
        return [float(x) for x in (value.tolist() if hasattr(value, "tolist") else value)]

    def copy(self, **kw: Any) -> Embedding:
        return Embedding(self.dimensions)


class SearchVector(TypeDecorator[str]):
    """The generated full-text column: tsvector on PostgreSQL (GIN-indexed). SQLite keeps its
    full-text index in FTS5 tables instead, so there the column is a virtual NULL."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TSVECTOR())
        return dialect.type_descriptor(Text())
