"""Agent success evaluation results, unique per (session_id, evaluation_name).

Saving twice updates the row (one INSERT ... ON CONFLICT DO UPDATE); created_at is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from reflexio_store.dialect import insert_or_update
from reflexio_store.models import AgentSuccessEvaluationResult
from reflexio_store.store._operation import embedding_dimensions, read, write
from reflexio_store.store.paging import DEFAULT_LIMIT, paginate
from reflexio_store.validation import (
    INT32_MAX,
    check_embedding,
    filter_key,
    optional_bool,
    optional_int,
    optional_key,
    optional_text,
    require_key,
)

_EVALUATION_FIELDS = (
    "agent_version",
    "is_success",
    "failure_type",
    "failure_reason",
    "regular_vs_shadow",
    "number_of_correction_per_session",
    "user_turns_to_resolution",
    "is_escalated",
    "embedding",
)


def save_evaluation_result(
    session: Session,
    session_id: str,
    evaluation_name: str,
    *,
    agent_version: str | None = None,
    is_success: bool | None = None,
    failure_type: str | None = None,
    failure_reason: str | None = None,
    regular_vs_shadow: str | None = None,
    number_of_correction_per_session: int | None = None,
    user_turns_to_resolution: int | None = None,
    is_escalated: bool | None = None,
    embedding: Sequence[float] | None = None,
) -> AgentSuccessEvaluationResult:
    """Insert or update the result for (session_id, evaluation_name) in one upsert statement.
    Every field is replaced on update; the first created_at is kept."""
    values: dict[str, Any] = {
        "session_id": require_key(session_id, "session_id"),
        "evaluation_name": require_key(evaluation_name, "evaluation_name"),
        "agent_version": optional_key(agent_version, "agent_version"),
        "is_success": optional_bool(is_success, "is_success"),
        "failure_type": optional_text(failure_type, "failure_type"),
        "failure_reason": optional_text(failure_reason, "failure_reason"),
        "regular_vs_shadow": optional_text(regular_vs_shadow, "regular_vs_shadow"),
        "number_of_correction_per_session": optional_int(
            number_of_correction_per_session,
            "number_of_correction_per_session",
            0,
            INT32_MAX,
        ),
        "user_turns_to_resolution": optional_int(
            user_turns_to_resolution, "user_turns_to_resolution", 0, INT32_MAX
        ),
        "is_escalated": optional_bool(is_escalated, "is_escalated"),
        "embedding": check_embedding(embedding, embedding_dimensions(session)),
        "created_at": datetime.now(UTC),
    }
    keys = ["session_id", "evaluation_name"]
    stmt = (
        insert_or_update(session, AgentSuccessEvaluationResult, keys, _EVALUATION_FIELDS)
        .values(**values)
        .returning(AgentSuccessEvaluationResult)
        .execution_options(populate_existing=True)
    )
    result: AgentSuccessEvaluationResult = session.scalars(stmt).one()
    return result


def get_evaluation_results(session: Session, session_id: str) -> list[AgentSuccessEvaluationResult]:
    """Every evaluation result of one session, by evaluation_name."""
    return list(
        session.scalars(
            select(AgentSuccessEvaluationResult)
            .where(AgentSuccessEvaluationResult.session_id == require_key(session_id, "session_id"))
            .order_by(AgentSuccessEvaluationResult.evaluation_name)
        )
    )


def list_evaluation_results(
    session: Session,
    agent_version: str | None = None,
    *,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
) -> list[AgentSuccessEvaluationResult]:
    """Evaluation results (of one agent_version when given), newest first."""
    model = AgentSuccessEvaluationResult
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if agent_version is not None:
        stmt = stmt.where(model.agent_version == filter_key(agent_version, "agent_version"))
    return list(session.scalars(paginate(stmt, limit, offset)))


class EvaluationOperations:
    save_evaluation_result = write(save_evaluation_result)
    get_evaluation_results = read(get_evaluation_results)
    list_evaluation_results = read(list_evaluation_results)
