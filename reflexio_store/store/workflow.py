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
  json_type / json_extract / json_each (reflexio_store.dialect.json_contains).
- `cleanup_old_workflows` deletes in ONE statement and returns the exact number deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select

from reflexio_store.dialect import dialect_name, json_contains, upsert_statement
from reflexio_store.errors import ValidationError
from reflexio_store.models import WorkflowRun
from reflexio_store.one_statement import OneStatement
from reflexio_store.store._operation import fresh_connection, read, write, write_connection
from reflexio_store.store.crud import rowcount
from reflexio_store.store.workflow_rows import raw_columns, state_from_row, states_from_rows
from reflexio_store.validation import (
    filter_key,
    json_filter,
    json_object,
    optional_aware,
    optional_key,
    page,
    require_int,
    require_key,
    require_number,
)

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
MAX_STEP = 2**31 - 1
"""current_step_index and total_steps are 32-bit integer columns."""
# An update rewrites every field except the key and the first save's created_at.
_UPDATED_COLUMNS = tuple(f for f in STATE_FIELDS if f not in ("run_id", "created_at"))


_loads: dict[str, Any] = {}


def _save_statement(dialect: str) -> Any:
    return upsert_statement(dialect, _table, ("run_id",), _UPDATED_COLUMNS)


def _load_statement(dialect: str) -> Any:
    stmt = _loads.get(dialect)
    if stmt is None:
        columns = raw_columns(_table, STATE_FIELDS, dialect)
        stmt = _loads[dialect] = select(*columns).where(_c.run_id == bindparam("run_id"))
    return stmt


# -- validation -----------------------------------------------------------------------------


def _state_params(run_id: Any, state: Any) -> dict[str, Any]:
    run_id = require_key(run_id, "run_id")
    if not isinstance(state, Mapping):
        raise ValidationError(f"state must be a mapping, got {type(state).__name__}.")
    unknown = [key for key in state if key not in STATE_FIELDS]
    if unknown:
        raise ValidationError(
            f"Unknown workflow state field(s) {sorted(map(str, unknown))}; accepted fields are "
            f"{', '.join(STATE_FIELDS)}. Put anything else in pipeline_context or metadata."
        )
    if "run_id" in state and require_key(state["run_id"], "state['run_id']") != run_id:
        raise ValidationError(
            f"state['run_id'] is {state['run_id']!r} but run_id is {run_id!r}; they must match."
        )
    get = state.get
    if get("status") is None:
        raise ValidationError("state['status'] must be non-empty text, e.g. 'running'.")
    now = datetime.now(UTC)
    params: dict[str, Any] = {"run_id": run_id, "status": require_key(get("status"), "status")}
    for name in _TEXT_FIELDS:
        params[name] = optional_key(get(name), name)
    for name in _INT_FIELDS:
        value = get(name)
        params[name] = 0 if value is None else require_int(value, name, 0, MAX_STEP)
    for name in _JSON_FIELDS:
        value = get(name)
        params[name] = {} if value is None else json_object(value, name)
    params["created_at"] = optional_aware(get("created_at"), "created_at") or now
    params["updated_at"] = optional_aware(get("updated_at"), "updated_at") or now
    return params


# -- operations -----------------------------------------------------------------------------


def save_state(statement: OneStatement, run_id: str, state: Mapping[str, Any]) -> None:
    """Create or update the state of `run_id` in one upsert statement.

    Accepted fields: pipeline_id, pipeline_name, pipeline_version, status (required),
    current_step_index, total_steps, pipeline_context (JSON object), metadata (JSON object),
    created_at, updated_at (aware datetimes; default now). An existing run keeps its created_at.
    """
    params = _state_params(run_id, state)
    statement.execute(_save_statement(statement.dialect), params)


def load_state(statement: OneStatement, run_id: str) -> dict[str, Any] | None:
    """The saved state of `run_id` as a dict (JSON as Python objects, aware UTC datetimes), or
    None. Reads the primary, so it sees the latest save."""
    run_id = require_key(run_id, "run_id")
    rows = statement.rows(_load_statement(statement.dialect), {"run_id": run_id})
    return state_from_row(rows[0], statement.dialect) if rows else None


def delete_state(session: Session, run_id: str) -> bool:
    """Delete the run; True if it existed."""
    run_id = require_key(run_id, "run_id")
    return rowcount(session.execute(delete(_table).where(_c.run_id == run_id))) > 0


def list_runs(
    session: Session,
    status: str | None = None,
    pipeline_id: str | None = None,
    pipeline_name: str | None = None,
    metadata_filter: Mapping[str, Any] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Runs (as load_state dicts), newest first by created_at, ties broken by run_id.

    `metadata_filter` is JSON containment with the same meaning on both databases: every key
    must be present; nested objects are matched recursively; a list matches when every one of its
    elements is in the stored list (order and extra elements ignored); scalars must be equal and
    of the same JSON type ("1" does not match 1, true does not match 1).
    """
    limit, offset = page(limit, offset, unlimited=True)
    dialect = dialect_name(session)
    stmt = build_list_query(
        dialect,
        status=status,
        pipeline_id=pipeline_id,
        pipeline_name=pipeline_name,
        metadata_filter=metadata_filter,
        limit=limit,
        offset=offset,
    )
    return states_from_rows(session.connection().execute(stmt).all(), dialect)


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
    stmt = select(*raw_columns(_table, STATE_FIELDS, dialect))
    if status is not None:
        stmt = stmt.where(_c.status == filter_key(status, "status"))
    if pipeline_id is not None:
        stmt = stmt.where(_c.pipeline_id == filter_key(pipeline_id, "pipeline_id"))
    if pipeline_name is not None:
        stmt = stmt.where(_c.pipeline_name == filter_key(pipeline_name, "pipeline_name"))
    if metadata_filter is not None:
        metadata_filter = json_filter(metadata_filter, "metadata_filter")
        if metadata_filter:
            stmt = stmt.where(json_contains(_c.metadata, metadata_filter))
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
    # Bounded so `now - timedelta(days=...)` cannot overflow (a raw OverflowError otherwise).
    days = require_number(days_old, "days_old", 0, MAX_DAYS_OLD)
    cutoff = datetime.now(UTC) - timedelta(days=days)
    return rowcount(session.execute(delete(_table).where(_c.updated_at < cutoff)))


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
    "cleanup_old_workflows",
    "delete_state",
    "list_runs",
    "load_state",
    "save_state",
]
