"""Where PostgreSQL and SQLite differ, in one place.

- `dialect_name(bind)`: the one way to ask which database a session, connection or engine speaks.
- `insert_or_update` / `insert_or_ignore`: INSERT ... ON CONFLICT on both databases
  (`dialect_insert` for other ON CONFLICT forms).
- `json_contains` / `json_list_contains`: JSON containment with PostgreSQL's `@>` meaning on
  both databases, as expressions compiled per dialect (so a statement is built once, without
  knowing where it will run, and SQLAlchemy caches its compiled form per dialect).
- `transaction_lock`: a lock held until the transaction ends (PostgreSQL advisory lock; SQLite
  write transactions are already serialised).

Store modules use these instead of branching on the dialect themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Table,
    and_,
    case,
    exists,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal

Bind = Session | Connection | Engine

POSTGRESQL = "postgresql"
SQLITE = "sqlite"


def dialect_name(bind: Bind) -> str:
    """ "postgresql" or "sqlite": the dialect that `bind` speaks."""
    if isinstance(bind, Session):
        # The SessionFactory records its backend in every session's info; get_bind() is the
        # fallback for sessions made elsewhere.
        known = bind.info.get("backend")
        return str(known) if known else bind.get_bind().dialect.name
    return bind.dialect.name


# -- INSERT ... ON CONFLICT ---------------------------------------------------------------------


def _insert(dialect: str, table: Any) -> Any:
    # Both dialects' Insert offer the same on_conflict_* API and `excluded`.
    return postgresql.insert(table) if dialect == POSTGRESQL else sqlite.insert(table)


def dialect_insert(bind: Bind, table: Any) -> Any:
    """An INSERT for `bind`'s database that offers `on_conflict_do_nothing` /
    `on_conflict_do_update` and `excluded` (the same API on both dialects)."""
    return _insert(dialect_name(bind), table)


def insert_or_ignore(bind: Bind, table: Any, keys: Iterable[str] | None) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING (keys None: any unique conflict); add
    `.values(...)`/`.returning(...)`."""
    elements = list(keys) if keys is not None else None
    return _insert(dialect_name(bind), table).on_conflict_do_nothing(index_elements=elements)


def insert_or_update(
    bind: Bind,
    table: Table | Any,
    keys: Iterable[str],
    update: Iterable[str],
    *,
    where: ColumnElement[bool] | None = None,
) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE SET col = excluded.col for each `update` column
    [WHERE `where`]. Add `.values(...)` / `.returning(...)`, or pass parameters at execution.

    Without `where`, the statement is built once per (dialect, table, keys, update), so its
    compiled form is reused from SQLAlchemy's cache on hot paths."""
    dialect = dialect_name(bind)
    if where is None:
        return upsert_statement(dialect, table, tuple(keys), tuple(update))
    return _upsert(dialect, table, tuple(keys), tuple(update), where)


def _upsert(
    dialect: str,
    table: Any,
    keys: tuple[str, ...],
    update: tuple[str, ...],
    where: ColumnElement[bool] | None,
) -> Any:
    stmt = _insert(dialect, table)
    return stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: stmt.excluded[name] for name in update},
        where=where,
    )


@lru_cache(maxsize=64)
def upsert_statement(
    dialect: str, table: Any, keys: tuple[str, ...], update: tuple[str, ...]
) -> Any:
    """`insert_or_update` without `where` for a dialect given by name: one object per
    (dialect, table, keys, update), so a statement cached by identity stays cached."""
    return _upsert(dialect, table, keys, update, None)


# -- per-dialect expressions ---------------------------------------------------------------------


class per_dialect(ColumnElement[bool]):
    """A boolean expression with one spelling for PostgreSQL and one for SQLite; the compiler
    renders the one for the database the statement runs on. Both are ordinary SQLAlchemy
    expressions, so the statement's cache key and bound parameters work as usual."""

    inherit_cache = True
    type = Boolean()
    _traverse_internals = [
        ("postgresql", InternalTraversal.dp_clauseelement),
        ("sqlite", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, *, postgresql: ColumnElement[bool], sqlite: ColumnElement[bool]) -> None:
        self.postgresql = postgresql
        self.sqlite = sqlite

    @property
    def _from_objects(self) -> Any:
        # The tables the expression reads (its column's table), like a plain comparison.
        return self.postgresql._from_objects


@compiles(per_dialect)
def _compile_per_dialect(element: per_dialect, compiler: SQLCompiler, **kw: Any) -> str:
    chosen = element.postgresql if compiler.dialect.name == POSTGRESQL else element.sqlite
    return compiler.process(chosen, **kw)


# -- JSON containment ----------------------------------------------------------------------------


def json_list_contains(column: Any, value: Any) -> ColumnElement[bool]:
    """ "The JSON list in `column` contains `value`", meaning the same on both databases.

    PostgreSQL: JSONB containment ``column @> '[value]'`` (served by a GIN index when present).
    SQLite: ``EXISTS (SELECT 1 FROM json_each(column) WHERE value = :value)``.
    `value` should be a scalar (text or number); a row whose column is not a JSON list never
    matches.
    """
    elements = func.json_each(column).table_valued("value", joins_implicitly=True)
    return per_dialect(
        postgresql=type_coerce(column, JSONB).contains([value]),
        sqlite=exists().where(elements.c.value == value),
    )


def json_contains(column: Any, pattern: Mapping[str, Any]) -> ColumnElement[bool]:
    """ "The JSON object in `column` contains `pattern`", with PostgreSQL's `@>` rules on both
    databases: every key present; nested objects matched recursively; a list matches when each
    of its elements is in the stored list (order and extra elements ignored); scalars equal and
    of the same JSON type ("1" does not match 1, true does not match 1).

    PostgreSQL: ``column @> :pattern`` (GIN-indexable). SQLite: the same rules in SQL with
    json_type / json_extract / json_each.
    """
    # The column's Python type is the portable JSON (JSONB only as a dialect variant), whose
    # .contains() would be LIKE; coerce to JSONB to get `@>`.
    return per_dialect(
        postgresql=type_coerce(column, JSONB).contains(dict(pattern)),
        sqlite=_contains_at(column, "$", dict(pattern)),
    )


def _json_path_label(key: str) -> str | None:
    """`."key"` for a JSON path, or None when the key cannot be quoted safely (SQLite versions
    disagree on backslash escapes inside quoted labels)."""
    if '"' in key or "\\" in key:
        return None
    return f'."{key}"'


def _scalar_type_and_value(value: Any) -> tuple[tuple[str, ...], Any]:
    """The SQLite json types that can equal `value`, and the SQL value to compare with."""
    if value is None:
        return ("null",), None
    if value is True:
        return ("true",), None
    if value is False:
        return ("false",), None
    if isinstance(value, (int, float)):
        return ("integer", "real"), value
    return ("text",), value


def _contains_at(doc: Any, path: str, pattern: Any) -> ColumnElement[bool]:
    """SQLite: `pattern` is contained in the JSON value at `path` of `doc` (JSON text)."""
    json_type = func.json_type(doc, path)
    if isinstance(pattern, Mapping):
        conditions: list[ColumnElement[bool]] = [json_type == "object"]
        for key, item in pattern.items():
            label = _json_path_label(key)
            if label is not None:
                conditions.append(_contains_at(doc, path + label, item))
            else:
                # Match the key as a bound value instead of quoting it into a path.
                entry = func.json_each(doc, path).table_valued("key", "type", "atom", "value")
                conditions.append(
                    exists(
                        select(literal(1))
                        .select_from(entry)
                        .where(entry.c.key == key, _element_matches(entry, item))
                    )
                )
        return and_(*conditions)
    if isinstance(pattern, (list, tuple)):
        conditions = [json_type == "array"]
        for item in pattern:
            entry = func.json_each(doc, path).table_valued("key", "type", "atom", "value")
            conditions.append(
                exists(select(literal(1)).select_from(entry).where(_element_matches(entry, item)))
            )
        return and_(*conditions)
    types, value = _scalar_type_and_value(pattern)
    condition = json_type == types[0] if len(types) == 1 else json_type.in_(types)
    if value is None:
        return condition
    return and_(condition, func.json_extract(doc, path) == value)


def _element_matches(entry: Any, pattern: Any) -> ColumnElement[bool]:
    """SQLite: one json_each row (`type`, `atom`, `value`) contains `pattern`."""
    if isinstance(pattern, Mapping | list | tuple):
        container = "object" if isinstance(pattern, Mapping) else "array"
        # CASE makes SQLite parse `value` as JSON only when it is a container (scalar text
        # elements are not valid JSON documents).
        return (
            case(
                (entry.c.type == container, _contains_at(entry.c.value, "$", pattern)),
                else_=False,
            )
            == true()
        )
    types, value = _scalar_type_and_value(pattern)
    kind = entry.c.type
    condition: ColumnElement[bool] = kind == types[0] if len(types) == 1 else kind.in_(types)
    if value is None:
        return condition
    return and_(condition, entry.c.atom == value)


# -- transaction-scoped lock ---------------------------------------------------------------------


def _schema_name(session: Session) -> str:
    """The schema the session's tables live in (the engine's schema_translate_map), else
    "public"."""
    options = session.connection().get_execution_options()
    schema = (options.get("schema_translate_map") or {}).get(None)
    return str(schema or "public")


def transaction_lock(session: Session, namespace: str, *key: str | None) -> None:
    """Serialise transactions that take the same (namespace, key) until each commits or rolls
    back.

    PostgreSQL: a transaction-scoped advisory lock. Advisory locks are database-wide, but each
    organization has its own schema: the schema is part of the key, so the same key in two
    organizations does not serialise. SQLite: nothing to do, its write transactions are already
    serialised.
    """
    if dialect_name(session) != POSTGRESQL:
        return
    text_key = json.dumps([namespace, _schema_name(session), *key])
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(text_key, 0))))
