"""Bulk insert on PostgreSQL by binary COPY, inside the caller's transaction.

A batch of profiles through `INSERT ... VALUES` (SQLAlchemy's insertmanyvalues) sends every
512-d embedding as text ('[0.0123, ...]': formatted by Python, parsed by the server) and every
other value through the column types' processors a second time. Binary COPY sends the rows as
they are: float32 vectors in pgvector's wire format, jsonb, timestamptz. The rows arrive already
validated (crud.prepare_rows); driver errors are re-raised as SQLAlchemy's DBAPIError subclasses,
so duplicate keys and outages are translated as for any other statement.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np
from psycopg import Error as PsycopgError
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb
from sqlalchemy import BigInteger, Boolean, Column, Integer
from sqlalchemy import Enum as EnumType
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from reflexio_store.types import Embedding, JSONValue, UTCDateTime

COPY_MIN_ROWS = 16
"""Smaller batches use INSERT: COPY's fixed cost (one more statement) is not worth it."""
_READY = "reflexio_store_copy_vector"


class _VectorSlot:
    """Placeholder class the vector dumper is registered under (COPY picks dumpers by type oid,
    so no Python type of the application is claimed on the connection)."""


class _VectorCopyDumper(Dumper):
    """pgvector's binary format: dimensions (int16), unused (int16), big-endian float32s."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        array = np.asarray(obj, dtype=">f4")
        return struct.pack(">HH", array.size, 0) + array.tobytes()


def qualified_table_name(connection: Connection, table: str) -> str:
    """`table` as PostgreSQL resolves it for this connection: in the organization's schema when
    the connection translates schemas (text SQL is not translated), quoted."""
    options = connection.get_execution_options()
    schema = (options.get("schema_translate_map") or {}).get(None)
    quote = connection.dialect.identifier_preparer.quote
    return f"{quote(schema)}.{quote(table)}" if schema else quote(table)


def _vector_oid(connection: Connection) -> int:
    """The vector type's oid, with its COPY dumper registered on this DBAPI connection (once)."""
    fairy = connection.connection
    oid = fairy.info.get(_READY)
    if oid is None:
        found = connection.exec_driver_sql("SELECT oid FROM pg_type WHERE typname = 'vector'")
        oid = int(found.scalar_one())
        dumper = type("VectorCopyDumper", (_VectorCopyDumper,), {"oid": oid})
        fairy.dbapi_connection.adapters.register_dumper(_VectorSlot, dumper)  # type: ignore[union-attr]
        fairy.info[_READY] = oid
    return int(oid)


def _pg_type(column: Column[Any], vector_oid: int) -> int | str:
    kind = column.type
    if isinstance(kind, Embedding):
        return vector_oid
    if isinstance(kind, JSONValue):
        return "jsonb"
    if isinstance(kind, UTCDateTime):
        return "timestamptz"
    if isinstance(kind, (BigInteger, Integer)):
        return "int8" if isinstance(kind, BigInteger) else "int4"
    if isinstance(kind, Boolean):
        return "bool"
    if isinstance(kind, EnumType):
        return "varchar"
    return "text"


def _converter(column: Column[Any]) -> Any:
    if isinstance(column.type, JSONValue):
        # Dumped by the connection's JSON serializer: SQLAlchemy installs the engine's
        # (reflexio_store.json_text) in every connection's adapters.
        return lambda v: None if v is None else Jsonb(v)
    if isinstance(column.type, EnumType):
        return lambda v: v.value if isinstance(v, Enum) else v
    return None


def copy_rows(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (attribute name -> validated value, the same keys in every row) into
    `model`'s table with one binary COPY on the session's connection and transaction."""
    connection = session.connection()
    mapper = model.__mapper__
    names = list(rows[0])
    columns = [mapper.attrs[name].columns[0] for name in names]
    vector_oid = _vector_oid(connection)
    types = [_pg_type(column, vector_oid) for column in columns]
    converters = [_converter(column) for column in columns]
    plan = [(name, conv) for name, conv in zip(names, converters, strict=True)]
    quote = connection.dialect.identifier_preparer.quote
    target = qualified_table_name(connection, model.__table__.name)
    statement = (
        f"COPY {target} ({', '.join(quote(c.name) for c in columns)}) FROM STDIN (FORMAT BINARY)"
    )
    dbapi: Any = connection.connection.dbapi_connection
    try:
        with dbapi.cursor() as cursor, cursor.copy(statement) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row([row[n] if c is None else c(row[n]) for n, c in plan])
    except PsycopgError as error:
        raise DBAPIError.instance(statement, None, error, PsycopgError) from None
