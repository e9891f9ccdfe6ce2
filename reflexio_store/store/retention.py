"""Row limits (REFLEXIO_ROW_LIMIT_*): cap tables by deleting their oldest rows.

A target table at or over its limit loses its oldest 20% of rows by (created_at, primary key).
Limits come from the environment through `RetentionSettings` (default 250000 rows; 0 disables a
target) and can be overridden from code per call.

Cost. Reflexio counted every table on every publish (about a second per publish at scale). Here
the check is, per table:

1. an upper bound in O(log n): for integer keys ``max(pk) - min(pk) + 1`` (keys are unique
   integers, so a table never holds more rows than that); for ``requests`` on SQLite the same
   over its implicit rowid. Two index edge lookups. Below the limit → done, nothing else runs.
   Because the oldest rows are the ones deleted, the bound stays close to the real count.
2. only when the bound reaches the limit (or no bound exists: ``requests`` on PostgreSQL), an
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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import AliasChoices, Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import ColumnElement, and_, delete, func, literal_column, or_, select
from sqlalchemy.orm import Session

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
    """Read the row limits from the environment; a bad value raises ConfigurationError."""
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
    out: dict[str, int] = {}
    for name, value in (limits or {}).items():
        key = str(name).lower().removeprefix("reflexio_row_limit_")
        if key not in TARGET_NAMES:
            raise ValidationError(
                f"Unknown retention target {name!r}; expected one of: {', '.join(TARGET_NAMES)}."
            )
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValidationError(
                f"Row limit for {key} must be a non-negative integer (0 disables), got {value!r}."
            )
        out[key] = value
    return out


def _upper_bound(session: Session, target: _Target) -> int | None:
    """An O(log n) upper bound of the row count, or None when the key allows none."""
    model: Any = target.model
    if target.table == "requests":
        if session.get_bind().dialect.name != "sqlite":
            return None
        key: Any = literal_column("rowid")
    else:
        key = getattr(model, target.pk)
    low, high = session.execute(select(func.min(key), func.max(key)).select_from(model)).one()
    if low is None:
        return 0
    return int(high) - int(low) + 1


def _nth_oldest(session: Session, target: _Target, offset: int) -> tuple[Any, Any] | None:
    """(created_at, pk) of the row at `offset` in (created_at, pk) order, or None."""
    model: Any = target.model
    pk = getattr(model, target.pk)
    row = session.execute(
        select(model.created_at, pk).order_by(model.created_at, pk).limit(1).offset(offset)
    ).first()
    return None if row is None else (row[0], row[1])


def at_or_over_limit(session: Session, target: _Target, limit: int) -> bool:
    """Whether the table holds at least `limit` rows, without counting it (see module doc)."""
    if limit <= 0:
        return False
    bound = _upper_bound(session, target)
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
    config = settings if settings is not None else load_retention_settings()
    deleted: dict[str, int] = {}
    for target in TARGETS:
        limit = overrides.get(target.table, config.limit_for(target.table))
        if at_or_over_limit(session, target, limit):
            _trim(session, target, deleted)
    return {table: n for table, n in deleted.items() if n}


class RetentionOperations:
    """Row limits: `enforce_row_limits` deletes the oldest 20% of tables at their cap."""

    enforce_row_limits = write(enforce_row_limits)
