"""Workflow runs: seed 002's state backend (save_state / load_state / delete_state / list_runs /
cleanup_old_workflows), with one meaning on SQLite and PostgreSQL.

- JSON (pipeline_context, metadata) comes back as Python objects on both databases; datetimes
  come back aware, in UTC.
- `save_state` is one upsert statement; `created_at` of an existing run is never changed.
- `load_state` is one primary-key SELECT through Core, returning a dict. It reads the primary
  (route "fresh"): a run resumed right after a save must see that save.
- `list_runs` orders newest first by created_at with run_id as the tie-breaker, so offset pages
  never overlap or skip rows; an offset without a limit works on SQLite (LIMIT -1).
- `metadata_filter` is JSON containment everywhere: PostgreSQL `metadata @> :filter` (served by
  the GIN index ix_workflow_runs_metadata_gin); SQLite compiles the same rules to SQL with
  json_type / json_extract / json_each (see `_sqlite_containment`).
- `cleanup_old_workflows` deletes in ONE statement and returns the exact number deleted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Result,
    Table,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    select,
    true,
    type_coerce,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select

from reflexio_store.errors import ValidationError
from reflexio_store.models import WorkflowRun
from reflexio_store.store._operation import (
    backend,
    fresh_connection,
    read,
    write,
    write_connection,
)
from reflexio_store.validation import json_object, optional_text, require_text

Consistency = Literal["eventual", "strong"]

_table = cast(Table, WorkflowRun.__table__)
_c = _table.c

STATE_FIELDS = (
    "run_id",
    "pipeline_id",
    "pipeline_name",
    "pipeline_version",
    "status",
    "current_step_index",
    "total_steps",
    "pipeline_context",
    "metadata",
    "created_at",
    "updated_at",
)
_TEXT_FIELDS = ("pipeline_id", "pipeline_name", "pipeline_version")
_INT_FIELDS = ("current_step_index", "total_steps")
_JSON_FIELDS = ("pipeline_context", "metadata")
# An update rewrites every field except the key and the first save's created_at.
_UPDATED_COLUMNS = tuple(f for f in STATE_FIELDS if f not in ("run_id", "created_at"))

# The columns a state dict is built from, in STATE_FIELDS order.
_SELECT_COLUMNS = [_c[name] for name in STATE_FIELDS]


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


# -- statements built once per dialect (their compiled form is cached by SQLAlchemy) ----------

_upserts: dict[str, Any] = {}


def _upsert_statement(dialect: str) -> Any:
    stmt = _upserts.get(dialect)
    if stmt is None:
        insert = postgresql.insert(_table) if dialect == "postgresql" else sqlite.insert(_table)
        stmt = insert.on_conflict_do_update(
            index_elements=[_c.run_id],
            set_={name: insert.excluded[name] for name in _UPDATED_COLUMNS},
        )
        _upserts[dialect] = stmt
    return stmt


_LOAD_STATEMENT = select(*_SELECT_COLUMNS).where(_c.run_id == bindparam("run_id"))


# -- validation -----------------------------------------------------------------------------


def _json_value(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    return json_object(value, field)


def _int_value(value: Any, field: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{field} must be an integer, got {type(value).__name__}.")
    if value < 0 or value > 2**31 - 1:
        raise ValidationError(f"{field} must be between 0 and {2**31 - 1}, got {value}.")
    return value


def _datetime_value(value: Any, field: str, default: datetime) -> datetime:
    if value is None:
        return default
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(
            f"{field} must be a timezone-aware datetime, e.g. datetime.now(timezone.utc)."
        )
    return value


def _state_params(run_id: Any, state: Any) -> dict[str, Any]:
    run_id = require_text(run_id, "run_id")
    if not isinstance(state, Mapping):
        raise ValidationError(f"state must be a mapping, got {type(state).__name__}.")
    unknown = [key for key in state if key not in STATE_FIELDS]
    if unknown:
        raise ValidationError(
            f"Unknown workflow state field(s) {sorted(map(str, unknown))}; accepted fields are "
            f"{', '.join(STATE_FIELDS)}. Put anything else in pipeline_context or metadata."
        )
    if "run_id" in state and state["run_id"] != run_id:
        raise ValidationError(
            f"state['run_id'] is {state['run_id']!r} but run_id is {run_id!r}; they must match."
        )
    status = state.get("status")
    if not isinstance(status, str) or not status.strip():
        raise ValidationError("state['status'] must be non-empty text, e.g. 'running'.")
    now = datetime.now(UTC)
    params: dict[str, Any] = {"run_id": run_id, "status": require_text(status, "status")}
    for name in _TEXT_FIELDS:
        params[name] = optional_text(state.get(name), name)
    for name in _INT_FIELDS:
        params[name] = _int_value(state.get(name), name)
    for name in _JSON_FIELDS:
        params[name] = _json_value(state.get(name), name)
    params["created_at"] = _datetime_value(state.get("created_at"), "created_at", now)
    params["updated_at"] = _datetime_value(state.get("updated_at"), "updated_at", now)
    return params


# -- operations -----------------------------------------------------------------------------


def save_state(conn: Connection, run_id: str, state: Mapping[str, Any]) -> None:
    """Create or update the state of `run_id` in one upsert statement.

    Accepted fields: pipeline_id, pipeline_name, pipeline_version, status (required),
    current_step_index, total_steps, pipeline_context (JSON object), metadata (JSON object),
    created_at, updated_at (aware datetimes; default now). An existing run keeps its created_at.
    """
    params = _state_params(run_id, state)
    conn.execute(_upsert_statement(conn.dialect.name), params)


def _row_to_state(row: Any) -> dict[str, Any]:
    state = dict(zip(STATE_FIELDS, row, strict=True))
    for name in _JSON_FIELDS:
        value = state[name]
        if isinstance(value, str):  # defensive: a JSON column written as text by another tool
            state[name] = json.loads(value)
        elif value is None:
            state[name] = {}
    return state


def load_state(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The saved state of `run_id` as a dict (JSON as Python objects, aware UTC datetimes), or
    None. Reads the primary, so it sees the latest save."""
    run_id = require_text(run_id, "run_id")  # also refuses NUL, which PostgreSQL cannot take
    row = conn.execute(_LOAD_STATEMENT, {"run_id": run_id}).first()
    return None if row is None else _row_to_state(row)


def delete_state(session: Session, run_id: str) -> bool:
    """Delete the run; True if it existed."""
    run_id = require_text(run_id, "run_id")
    return _rowcount(session.execute(delete(_table).where(_c.run_id == run_id))) > 0


def _check_page(limit: Any, offset: Any) -> tuple[int | None, int]:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValidationError(f"limit must be None or an integer >= 0, got {limit!r}.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError(f"offset must be an integer >= 0, got {offset!r}.")
    return limit, offset


def list_runs(
    session: Session,
    status: str | None = None,
    pipeline_id: str | None = None,
    pipeline_name: str | None = None,
    metadata_filter: Mapping[str, Any] | None = None,
    limit: int | None = None,
    offset: int = 0,
    *,
    consistency: Consistency = "eventual",
) -> list[dict[str, Any]]:
    """Runs (as load_state dicts), newest first by created_at, ties broken by run_id.

    `metadata_filter` is JSON containment with the same meaning on both databases: every key
    must be present; nested objects are matched recursively; a list matches when every one of its
    elements is in the stored list (order and extra elements ignored); scalars must be equal and
    of the same JSON type ("1" does not match 1, true does not match 1).
    """
    limit, offset = _check_page(limit, offset)
    stmt = build_list_query(
        backend(session),
        status=status,
        pipeline_id=pipeline_id,
        pipeline_name=pipeline_name,
        metadata_filter=metadata_filter,
        limit=limit,
        offset=offset,
    )
    return [_row_to_state(row) for row in session.connection().execute(stmt)]


def build_list_query(
    dialect: str,
    *,
    status: str | None = None,
    pipeline_id: str | None = None,
    pipeline_name: str | None = None,
    metadata_filter: Mapping[str, Any] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> Select[Any]:
    """The SELECT list_runs runs (exposed for EXPLAIN in tests and diagnostics)."""
    stmt = select(*_SELECT_COLUMNS)
    if status is not None:
        stmt = stmt.where(_c.status == require_text(status, "status"))
    if pipeline_id is not None:
        stmt = stmt.where(_c.pipeline_id == require_text(pipeline_id, "pipeline_id"))
    if pipeline_name is not None:
        stmt = stmt.where(_c.pipeline_name == require_text(pipeline_name, "pipeline_name"))
    if metadata_filter is not None:
        check_metadata_filter(metadata_filter)
        if metadata_filter:
            if dialect == "postgresql":
                # The column's Python type is the portable JSON (JSONB only as a dialect variant),
                # whose .contains() would be LIKE; coerce to JSONB to get `@>` (GIN-indexable).
                jsonb = type_coerce(_c.metadata, postgresql.JSONB())
                stmt = stmt.where(jsonb.contains(dict(metadata_filter)))
            else:
                stmt = stmt.where(_sqlite_containment(_c.metadata, dict(metadata_filter)))
    stmt = stmt.order_by(_c.created_at.desc(), _c.run_id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return stmt


MAX_DAYS_OLD = 36_500
"""Largest `days_old` accepted by cleanup_old_workflows (about 100 years)."""


def cleanup_old_workflows(session: Session, days_old: float) -> int:
    """Delete runs last updated more than `days_old` days ago; returns how many were deleted
    (one DELETE statement, its exact row count)."""
    if isinstance(days_old, bool) or not isinstance(days_old, (int, float)):
        raise ValidationError(f"days_old must be a number of days, got {type(days_old).__name__}.")
    # Bounded so `now - timedelta(days=...)` cannot overflow (a raw OverflowError otherwise).
    if not math.isfinite(days_old) or not 0 <= days_old <= MAX_DAYS_OLD:
        raise ValidationError(
            f"days_old must be a finite number of days from 0 to {MAX_DAYS_OLD}, got {days_old!r}."
        )
    cutoff = datetime.now(UTC) - timedelta(days=days_old)
    return _rowcount(session.execute(delete(_table).where(_c.updated_at < cutoff)))


# -- metadata containment -------------------------------------------------------------------

_MAX_FILTER_DEPTH = 32


def check_metadata_filter(value: Any) -> None:
    """A filter is a JSON object of JSON values; NaN, infinities and non-string keys refused."""
    if not isinstance(value, Mapping):
        raise ValidationError(
            f"metadata_filter must be a mapping (JSON object), got {type(value).__name__}."
        )
    _check_filter_value(value, 0)


def _check_filter_value(value: Any, depth: int) -> None:
    if depth > _MAX_FILTER_DEPTH:
        raise ValidationError(f"metadata_filter is nested deeper than {_MAX_FILTER_DEPTH} levels.")
    if value is None or isinstance(value, (str, bool)):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValidationError("metadata_filter holds an integer outside the 64-bit range.")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError("metadata_filter contains NaN or infinity; JSON cannot hold it.")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(
                    f"metadata_filter keys must be text, got {type(key).__name__}."
                )
            _check_filter_value(item, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_filter_value(item, depth + 1)
        return
    raise ValidationError(
        f"metadata_filter holds a {type(value).__name__}; use str, int, float, bool, None, "
        "lists and dicts."
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


def _sqlite_containment(doc: Any, pattern: Mapping[str, Any]) -> ColumnElement[bool]:
    """SQL that is true when the JSON text `doc` contains `pattern` (PostgreSQL @> rules)."""
    return _contains_at(doc, "$", pattern)


def _contains_at(doc: Any, path: str, pattern: Any) -> ColumnElement[bool]:
    """`pattern` is contained in the JSON value at `path` of `doc` (a JSON text expression)."""
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
    """One json_each row (`type`, `atom`, `value`) contains `pattern`."""
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


class WorkflowOperations:
    save_state = write_connection(save_state)
    load_state = fresh_connection(load_state)
    delete_state = write(delete_state)
    list_runs = read(list_runs)
    cleanup_old_workflows = write(cleanup_old_workflows)


__all__ = [
    "STATE_FIELDS",
    "WorkflowOperations",
    "build_list_query",
    "check_metadata_filter",
    "cleanup_old_workflows",
    "delete_state",
    "list_runs",
    "load_state",
    "save_state",
]
