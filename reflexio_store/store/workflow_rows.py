"""Workflow rows to state dicts, at a few microseconds a row (list_runs returns hundreds).

The SELECT asks the driver for raw values (SQLite: the stored text; PostgreSQL: the JSON as
text), bypassing the column types' per-value result processors, and this module decodes them:

- JSON with the C scanner of the standard library, one call per document (json.loads adds a
  Python-level wrapper that costs more than the parse of a small document); anything the
  scanner does not consume whole goes through json.loads, which decides (and raises) as before.
- SQLite datetimes (written by UTCDateTime as naive UTC text) parsed with
  datetime.fromisoformat(text + "+00:00"), which is several times faster than parsing and then
  `replace(tzinfo=UTC)`; any other stored form goes through the general path.
- PostgreSQL datetimes come aware from psycopg; they are converted to UTC only when their
  zone is not already UTC.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, DateTime, Table, Text, cast, type_coerce

# The C scanner json.loads itself uses (an attribute of every JSONDecoder), without its wrappers.
_scan_once = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
# PostgreSQL timestamptz without UTCDateTime's per-value processor (psycopg returns it aware).
_AWARE = DateTime(timezone=True)


def raw_columns(table: Table, fields: Sequence[str], dialect: str) -> list[ColumnElement[Any]]:
    """The SELECT list for `fields` (STATE_FIELDS order) whose values `state_from_row` takes."""
    columns: list[ColumnElement[Any]] = []
    for name in fields:
        column = table.c[name]
        if name in ("pipeline_context", "metadata"):
            # PostgreSQL: jsonb rendered as text by the server, parsed here in one C call.
            text = cast(column, Text) if dialect == "postgresql" else type_coerce(column, Text)
            columns.append(text.label(name))
        elif name in ("created_at", "updated_at") and dialect != "postgresql":
            columns.append(type_coerce(column, Text).label(name))
        elif name in ("created_at", "updated_at"):
            columns.append(type_coerce(column, _AWARE).label(name))
        else:
            columns.append(column)
    return columns


def _json_object(value: Any) -> Any:
    """A stored JSON document as Python; NULL and JSON null read as {} (an empty state)."""
    if value is None:
        return {}
    if not isinstance(value, str):
        return value
    try:
        parsed, end = _scan_once(value, 0)
    except (StopIteration, ValueError):
        end = -1
    if end != len(value):
        parsed = json.loads(value)  # leading/trailing whitespace, or invalid: the general path
    return {} if parsed is None else parsed


def _sqlite_datetime(value: Any) -> Any:
    if value is None or isinstance(value, datetime):
        return _utc(value)
    try:
        return datetime.fromisoformat(value + "+00:00")
    except (TypeError, ValueError):
        return _utc(datetime.fromisoformat(value))


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _state(
    row: Sequence[Any], context: Any, meta: Any, created: Any, updated: Any
) -> dict[str, Any]:
    """The state dict of `row` with its decoded JSON and datetimes."""
    return {
        "run_id": row[0],
        "pipeline_id": row[1],
        "pipeline_name": row[2],
        "pipeline_version": row[3],
        "status": row[4],
        "current_step_index": row[5],
        "total_steps": row[6],
        "pipeline_context": context,
        "metadata": meta,
        "created_at": created,
        "updated_at": updated,
    }


def state_from_row(row: Sequence[Any], dialect: str) -> dict[str, Any]:
    to_datetime = _utc if dialect == "postgresql" else _sqlite_datetime
    return _state(
        row, _json_object(row[7]), _json_object(row[8]), to_datetime(row[9]), to_datetime(row[10])
    )


def states_from_rows(rows: Sequence[Sequence[Any]], dialect: str) -> list[dict[str, Any]]:
    """`state_from_row` of every row. Rows in the form this store writes (JSON objects with
    nothing around them; on SQLite naive UTC datetime text, on PostgreSQL datetimes in UTC)
    are decoded in one loop without a function call per value; any other row, and any row
    the fast path cannot read, takes `state_from_row`, which decides (and raises) as before."""
    scan = _scan_once
    postgres = dialect == "postgresql"
    parse = datetime.fromisoformat
    states: list[dict[str, Any]] = []
    append = states.append
    for row in rows:
        context, meta, created, updated = row[7], row[8], row[9], row[10]
        try:
            parsed_context, context_end = scan(context, 0)
            parsed_meta, meta_end = scan(meta, 0)
            if postgres:
                if created.tzinfo is not UTC or updated.tzinfo is not UTC:
                    raise ValueError
            else:
                created = parse(created + "+00:00")
                updated = parse(updated + "+00:00")
        except (AttributeError, StopIteration, TypeError, ValueError):
            append(state_from_row(row, dialect))
            continue
        if (
            context_end != len(context)
            or meta_end != len(meta)
            or type(parsed_context) is not dict
            or type(parsed_meta) is not dict
        ):
            append(state_from_row(row, dialect))
            continue
        append(_state(row, parsed_context, parsed_meta, created, updated))
    return states
