"""Row limits (REFLEXIO_ROW_LIMIT_*): cap tables by deleting their oldest rows.

A target table at or over its limit loses its oldest 20% of rows by (created_at, primary key).
Limits come from the environment through `RetentionSettings` (default 250000 rows; 0 disables a
target) and can be overridden from code per call.

Cost. Reflexio counted every table on every publish (about a second per publish at scale). Here
the check is, per table:

1. an upper bound of every table in ONE statement: for integer keys ``max(pk) - min(pk) + 1``
   (keys are unique integers, so a table never holds more rows than that), two index edge
   lookups; for ``requests`` on SQLite the same over its implicit rowid; for ``requests`` on
   PostgreSQL (text keys) the heap's page count times the most tuples a page can hold. Below the
   limit → done, nothing else runs. Because the oldest rows are the ones deleted, the key bound
   stays close to the real count.
2. only when the bound reaches the limit, an
   exact probe: ``SELECT created_at, pk ... ORDER BY created_at, pk LIMIT 1 OFFSET limit-1``, an
   index walk that stops after `limit` entries (never a full count) and is empty when the table
   is under its limit.
3. only when the table really is at its limit: one ``count(*)`` (to size the 20%), one probe for
   the cutoff row (the last row to delete), then ONE ``DELETE ... WHERE (created_at, pk) <=
   cutoff``. Dependants go first in the same transaction (a request's interactions). Because the
   delete is by cutoff, a concurrent second enforcement computes the same cutoff and deletes
   nothing more: nothing is counted or deleted twice.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ColumnElement, and_, bindparam, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

from reflexio_store.dialect import dialect_name
from reflexio_store.errors import ConfigurationError, ValidationError
from reflexio_store.models import (
    AgentPlaybook,
    AgentSuccessEvaluationResult,
    Interaction,
    PlaybookAggregationChangeLog,
    PlaybookOptimizationEvent,
    Profile,
    ProfileChangeLog,
    Request,
    UserPlaybook,
)
from reflexio_store.models.base import Base
from reflexio_store.store._operation import write
from reflexio_store.store.bulk_copy import qualified_table_name
from reflexio_store.validation import MAX_OFFSET, require_int

DEFAULT_ROW_LIMIT = 250_000
DELETE_FRACTION_DIVISOR = 5
"""The oldest 1/5 (20%) of a table's rows are deleted when it reaches its limit."""


def _limit_field(target: str) -> Any:
    return Field(
        default=DEFAULT_ROW_LIMIT,
        ge=0,
        validation_alias=AliasChoices(f"REFLEXIO_ROW_LIMIT_{target.upper()}", target),
    )


class RetentionSettings(BaseSettings):
    """Row limits per target table. Environment: REFLEXIO_ROW_LIMIT_<TARGET> (0 disables);
    INTERACTION_CLEANUP_THRESHOLD is the legacy interactions cap used when
    REFLEXIO_ROW_LIMIT_INTERACTIONS is unset. From code: ``RetentionSettings(profiles=1000)``."""

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, populate_by_name=True, hide_input_in_errors=True
    )

    interactions: int | None = Field(
        default=None,
        ge=0,
        validation_alias=AliasChoices("REFLEXIO_ROW_LIMIT_INTERACTIONS", "interactions"),
    )
    interaction_cleanup_threshold: int | None = Field(
        default=None,
        ge=0,
        validation_alias=AliasChoices(
            "INTERACTION_CLEANUP_THRESHOLD", "interaction_cleanup_threshold"
        ),
    )
    profiles: int = _limit_field("profiles")
    user_playbooks: int = _limit_field("user_playbooks")
    agent_playbooks: int = _limit_field("agent_playbooks")
    requests: int = _limit_field("requests")
    profile_change_logs: int = _limit_field("profile_change_logs")
    playbook_aggregation_change_logs: int = _limit_field("playbook_aggregation_change_logs")
    agent_success_evaluation_results: int = _limit_field("agent_success_evaluation_results")
    playbook_optimization_events: int = _limit_field("playbook_optimization_events")

    def limit_for(self, target: str) -> int:
        """The row limit of a target table (0: no limit)."""
        if target == "interactions":
            if self.interactions is not None:
                return self.interactions
            if self.interaction_cleanup_threshold is not None:
                return self.interaction_cleanup_threshold
            return DEFAULT_ROW_LIMIT
        return int(getattr(self, target))


def load_retention_settings() -> RetentionSettings:
    """Read the row limits from the environment; a bad value raises ConfigurationError.

    Resolved once per distinct set of the variables that feed it (building the settings object
    costs far more than the check itself), so a changed environment is still seen on the next
    call."""
    key = _environment_key()
    cached = _settings_cache.get(key)
    if cached is None:
        cached = _settings_cache[key] = _read_retention_settings()
        if len(_settings_cache) > 16:  # an environment that keeps changing: keep the newest
            del _settings_cache[next(iter(_settings_cache))]
    return cached


_settings_cache: dict[tuple[tuple[str, str], ...], RetentionSettings] = {}


def _environment_key() -> tuple[tuple[str, str], ...]:
    # Environment names are matched case-insensitively, by the variable or by the field name;
    # every REFLEXIO_ROW_LIMIT_* is part of the key, so that a misspelt one is reported.
    names = _SETTING_NAMES
    return tuple(
        sorted(
            (k.lower(), v)
            for k, v in os.environ.items()
            if k.lower() in names or k.lower().startswith(_PREFIX)
        )
    )


_PREFIX = "reflexio_row_limit_"


def _read_retention_settings() -> RetentionSettings:
    unknown = sorted(
        name
        for name in os.environ
        if name.lower().startswith(_PREFIX) and name.lower() not in _SETTING_NAMES
    )
    if unknown:
        known = ", ".join(
            f"REFLEXIO_ROW_LIMIT_{name.upper()}"
            for name in RetentionSettings.model_fields
            if name != "interaction_cleanup_threshold"
        )
        raise ConfigurationError(
            f"Unknown row limit variable(s) {', '.join(unknown)}: a misspelt limit would be "
            f"ignored. The row limits are {known}."
        )
    try:
        return RetentionSettings()
    except PydanticValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(
            f"Invalid row limit settings: {problems}. REFLEXIO_ROW_LIMIT_<TARGET> and "
            "INTERACTION_CLEANUP_THRESHOLD must be non-negative integers (0 disables)."
        ) from None


_SETTING_NAMES = frozenset(
    name.lower()
    for field in RetentionSettings.model_fields.values()
    if isinstance(field.validation_alias, AliasChoices)
    for name in field.validation_alias.choices
    if isinstance(name, str)
)


@dataclass(frozen=True)
class _Target:
    table: str
    model: type[Base]
    pk: str


# Parents before their dependants' own tables: a request's deletion already takes its
# interactions, so the interactions check then sees the smaller table.
TARGETS: tuple[_Target, ...] = (
    _Target("requests", Request, "request_id"),
    _Target("interactions", Interaction, "interaction_id"),
    _Target("profiles", Profile, "id"),
    _Target("user_playbooks", UserPlaybook, "user_playbook_id"),
    _Target("agent_playbooks", AgentPlaybook, "agent_playbook_id"),
    _Target("profile_change_logs", ProfileChangeLog, "id"),
    _Target("playbook_aggregation_change_logs", PlaybookAggregationChangeLog, "id"),
    _Target("agent_success_evaluation_results", AgentSuccessEvaluationResult, "id"),
    _Target("playbook_optimization_events", PlaybookOptimizationEvent, "id"),
)
TARGET_NAMES = tuple(t.table for t in TARGETS)


def _normalise_overrides(limits: Mapping[str, int] | None) -> dict[str, int]:
    if limits is not None and not isinstance(limits, Mapping):
        raise ValidationError("limits must be a mapping of target to row limit, or None.")
    out: dict[str, int] = {}
    for name, value in (limits or {}).items():
        key = name.lower().removeprefix("reflexio_row_limit_") if isinstance(name, str) else None
        if key not in TARGET_NAMES:
            raise ValidationError(
                f"Unknown retention target in limits; expected one of: {', '.join(TARGET_NAMES)}."
            )
        # 0 disables; at most MAX_OFFSET, the largest row offset both databases take.
        out[key] = require_int(value, f"row limit for {key}", 0, MAX_OFFSET)
    return out


_MAX_TUPLES_PER_PAGE = "(current_setting('block_size')::int - 24) / 28"
"""PostgreSQL's MaxHeapTuplesPerPage: page size minus header over the smallest tuple's footprint
(23-byte header aligned to 24, plus its 4-byte line pointer). 291 for 8 kB pages."""


def _bound_expression(target: _Target, dialect: str) -> ColumnElement[Any]:
    """SQL for an upper bound of the table's row count, NULL when there is none (module doc)."""
    model: Any = target.model
    if target.table == "requests" and dialect == "postgresql":
        # No integer key: the heap's pages times the most tuples a page can hold (an exact
        # bound: live and dead rows together never exceed it). The file size is one lseek.
        pages = func.pg_relation_size(
            func.to_regclass(bindparam("requests_table"))
        ) / literal_column("current_setting('block_size')::int")
        return pages * literal_column(_MAX_TUPLES_PER_PAGE)
    key: Any = literal_column("rowid") if target.table == "requests" else getattr(model, target.pk)
    # Two scalar subqueries, not min() and max() in one SELECT: SQLite reads an index edge only
    # for a query with a single min() or max(); both together scan the whole table.
    high = select(func.max(key)).select_from(model).scalar_subquery()
    low = select(func.min(key)).select_from(model).scalar_subquery()
    return func.coalesce(high - low + 1, 0)


_bounds_statements: dict[str, Any] = {}


def _upper_bounds(session: Session) -> dict[str, int | None]:
    """Every target's row count bound, in one statement (one round trip)."""
    dialect = dialect_name(session)
    stmt = _bounds_statements.get(dialect)
    if stmt is None:
        columns = [_bound_expression(t, dialect).label(t.table) for t in TARGETS]
        stmt = _bounds_statements[dialect] = select(*columns)
    params: dict[str, Any] = {}
    if dialect == "postgresql":
        params["requests_table"] = qualified_table_name(session.connection(), "requests")
    row = session.execute(stmt, params).one()
    return {t.table: None if v is None else int(v) for t, v in zip(TARGETS, row, strict=True)}


def _nth_oldest(session: Session, target: _Target, offset: int) -> tuple[Any, Any] | None:
    """(created_at, pk) of the row at `offset` in (created_at, pk) order, or None."""
    model: Any = target.model
    pk = getattr(model, target.pk)
    row = session.execute(
        select(model.created_at, pk).order_by(model.created_at, pk).limit(1).offset(offset)
    ).first()
    return None if row is None else (row[0], row[1])


def at_or_over_limit(
    session: Session,
    target: _Target,
    limit: int,
    bounds: Mapping[str, int | None] | None = None,
) -> bool:
    """Whether the table holds at least `limit` rows, without counting it (see module doc).
    `bounds`: what `_upper_bounds` returned, when already read in this transaction."""
    if limit <= 0:
        return False
    bound = (bounds if bounds is not None else _upper_bounds(session))[target.table]
    if bound is not None and bound < limit:
        return False
    return _nth_oldest(session, target, limit - 1) is not None


def _up_to(target: _Target, cutoff: tuple[Any, Any]) -> ColumnElement[bool]:
    model: Any = target.model
    pk = getattr(model, target.pk)
    created, key = cutoff
    return or_(model.created_at < created, and_(model.created_at == created, pk <= key))


def _trim(session: Session, target: _Target, deleted: dict[str, int]) -> None:
    model: Any = target.model
    count = int(session.execute(select(func.count()).select_from(model)).scalar_one())
    to_delete = max(1, count // DELETE_FRACTION_DIVISOR)
    cutoff = _nth_oldest(session, target, to_delete - 1)
    if cutoff is None:  # pragma: no cover - the table shrank between statements
        return
    condition = _up_to(target, cutoff)
    if target.table == "requests":
        doomed = select(Request.request_id).where(condition)
        result: Any = session.execute(delete(Interaction).where(Interaction.request_id.in_(doomed)))
        deleted["interactions"] = deleted.get("interactions", 0) + int(result.rowcount)
    result = session.execute(
        delete(model).where(condition).execution_options(synchronize_session=False)
    )
    deleted[target.table] = deleted.get(target.table, 0) + int(result.rowcount)


def enforce_row_limits(
    session: Session,
    limits: Mapping[str, int] | None = None,
    *,
    settings: RetentionSettings | None = None,
) -> dict[str, int]:
    """Trim every target table that is at or over its row limit; return rows deleted per table.

    `limits` overrides single targets from code, e.g. ``{"profiles": 1000}`` (0 disables);
    the rest come from `settings` (default: the environment). A table at its limit loses its
    oldest 20% of rows by (created_at, primary key) in one DELETE; a request's interactions are
    deleted with it (counted under "interactions"). Tables with nothing deleted are omitted.
    """
    overrides = _normalise_overrides(limits)
    if settings is not None and not isinstance(settings, RetentionSettings):
        raise ValidationError(
            f"settings must be a RetentionSettings or None, got {type(settings).__name__}."
        )
    config = settings if settings is not None else load_retention_settings()
    limits_now = {t.table: overrides.get(t.table, config.limit_for(t.table)) for t in TARGETS}
    deleted: dict[str, int] = {}
    if not any(limits_now.values()):
        return deleted
    # Read before any trim: deleting a request's interactions only lowers the true count, so
    # the bound read first stays an upper bound.
    bounds = _upper_bounds(session)
    for target in TARGETS:
        if at_or_over_limit(session, target, limits_now[target.table], bounds):
            _trim(session, target, deleted)
    return {table: n for table, n in deleted.items() if n}


class RetentionOperations:
    """Row limits: `enforce_row_limits` deletes the oldest 20% of tables at their cap."""

    enforce_row_limits = write(enforce_row_limits)
