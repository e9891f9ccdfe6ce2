"""Evaluation results, change logs, playbook optimization jobs, and share links.

- Agent success evaluation results are unique per (session_id, evaluation_name): saving twice
  updates the row (one dialect-aware INSERT ... ON CONFLICT DO UPDATE); created_at is kept.
- Change logs and optimization events list newest first (created_at, then id, descending).
- Deleting an optimization job deletes its events and candidates, and the candidates'
  evaluations, through ON DELETE CASCADE in the database (SQLite runs with foreign_keys=ON).
- Share links: the plain token is returned once by `create_share_link`; only its SHA-256 hash is
  stored; `resolve_share_link` honours expiry.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, cast

from sqlalchemy import CursorResult, Result, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select

from reflexio_store.errors import NotFoundError, ValidationError
from reflexio_store.models import (
    AgentSuccessEvaluationResult,
    PlaybookAggregationChangeLog,
    PlaybookOptimizationCandidate,
    PlaybookOptimizationEvaluation,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
    ProfileChangeLog,
    ShareLink,
)
from reflexio_store.security import IssuedSecret, check_token, hash_token, new_token
from reflexio_store.store._operation import backend, embedding_dimensions, read, write
from reflexio_store.validation import (
    check_embedding,
    check_json,
    optional_text,
    require_aware,
    require_text,
)

Consistency = Literal["eventual", "strong"]
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000

S = TypeVar("S", bound=Select[Any])


# -- shared checks --------------------------------------------------------------------------


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount)


def _check_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(f"{what} must be an integer, got {type(value).__name__}.")
    return value


def _json(value: Any, field_name: str, *, kind: type = object) -> Any:
    """A JSON-serialisable value (NaN refused: PostgreSQL JSONB cannot hold it)."""
    if value is None:
        return None
    if kind is dict and not isinstance(value, Mapping):
        raise ValidationError(
            f"{field_name} must be a mapping (JSON object), got {type(value).__name__}."
        )
    if kind is list:
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise ValidationError(
                f"{field_name} must be a list (JSON array), got {type(value).__name__}."
            )
        value = list(value)
    return json.loads(check_json(value, field_name))


def _optional_bool(value: Any, field_name: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValidationError(f"{field_name} must be True, False or None.")
    return value


def _optional_int(value: Any, field_name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValidationError(f"{field_name} must be an integer or None.")
    return value


def _optional_score(value: Any, field_name: str = "score") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{field_name} must be a finite number or None.")
    return float(value)


def _page(stmt: S, limit: int | None, offset: int) -> S:
    if limit is not None and (
        isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_LIMIT
    ):
        raise ValidationError(f"limit must be an integer between 0 and {MAX_LIMIT}, or None.")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ValidationError("offset must be an integer >= 0.")
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return stmt


def _insert(session: Session, table: Any) -> Any:
    return postgresql.insert(table) if backend(session) == "postgresql" else sqlite.insert(table)


# -- agent success evaluation results -------------------------------------------------------

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
        "session_id": require_text(session_id, "session_id"),
        "evaluation_name": require_text(evaluation_name, "evaluation_name"),
        "agent_version": optional_text(agent_version, "agent_version"),
        "is_success": _optional_bool(is_success, "is_success"),
        "failure_type": optional_text(failure_type, "failure_type"),
        "failure_reason": optional_text(failure_reason, "failure_reason"),
        "regular_vs_shadow": optional_text(regular_vs_shadow, "regular_vs_shadow"),
        "number_of_correction_per_session": _optional_int(
            number_of_correction_per_session, "number_of_correction_per_session"
        ),
        "user_turns_to_resolution": _optional_int(
            user_turns_to_resolution, "user_turns_to_resolution"
        ),
        "is_escalated": _optional_bool(is_escalated, "is_escalated"),
        "embedding": check_embedding(embedding, embedding_dimensions(session)),
        "created_at": datetime.now(UTC),
    }
    stmt = _insert(session, AgentSuccessEvaluationResult).values(**values)
    stmt = (
        stmt.on_conflict_do_update(
            index_elements=["session_id", "evaluation_name"],
            set_={name: stmt.excluded[name] for name in _EVALUATION_FIELDS},
        )
        .returning(AgentSuccessEvaluationResult)
        .execution_options(populate_existing=True)
    )
    result: AgentSuccessEvaluationResult = session.scalars(stmt).one()
    return result


def get_evaluation_results(
    session: Session, session_id: str, *, consistency: Consistency = "eventual"
) -> list[AgentSuccessEvaluationResult]:
    """Every evaluation result of one session, by evaluation_name."""
    return list(
        session.scalars(
            select(AgentSuccessEvaluationResult)
            .where(
                AgentSuccessEvaluationResult.session_id == require_text(session_id, "session_id")
            )
            .order_by(AgentSuccessEvaluationResult.evaluation_name)
        )
    )


def list_evaluation_results(
    session: Session,
    agent_version: str | None = None,
    *,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[AgentSuccessEvaluationResult]:
    """Evaluation results (of one agent_version when given), newest first."""
    model = AgentSuccessEvaluationResult
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if agent_version is not None:
        stmt = stmt.where(model.agent_version == require_text(agent_version, "agent_version"))
    return list(session.scalars(_page(stmt, limit, offset)))


# -- change logs ----------------------------------------------------------------------------


def add_profile_change_log(
    session: Session,
    *,
    request_id: str | None = None,
    user_id: str | None = None,
    added_profiles: Sequence[Any] = (),
    removed_profiles: Sequence[Any] = (),
    mentioned_profiles: Sequence[Any] = (),
) -> ProfileChangeLog:
    row = ProfileChangeLog(
        request_id=optional_text(request_id, "request_id"),
        user_id=optional_text(user_id, "user_id"),
        added_profiles=_json(added_profiles, "added_profiles", kind=list),
        removed_profiles=_json(removed_profiles, "removed_profiles", kind=list),
        mentioned_profiles=_json(mentioned_profiles, "mentioned_profiles", kind=list),
    )
    session.add(row)
    session.flush()
    return row


def list_profile_change_logs(
    session: Session,
    *,
    user_id: str | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[ProfileChangeLog]:
    """Profile change logs (of one user when given), newest first."""
    stmt = select(ProfileChangeLog).order_by(
        ProfileChangeLog.created_at.desc(), ProfileChangeLog.id.desc()
    )
    if user_id is not None:
        stmt = stmt.where(ProfileChangeLog.user_id == require_text(user_id, "user_id"))
    return list(session.scalars(_page(stmt, limit, offset)))


def add_playbook_aggregation_change_log(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    before: Sequence[Any] = (),
    after: Sequence[Any] = (),
) -> PlaybookAggregationChangeLog:
    row = PlaybookAggregationChangeLog(
        playbook_name=optional_text(playbook_name, "playbook_name"),
        agent_version=optional_text(agent_version, "agent_version"),
        before=_json(before, "before", kind=list),
        after=_json(after, "after", kind=list),
    )
    session.add(row)
    session.flush()
    return row


def list_playbook_aggregation_change_logs(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[PlaybookAggregationChangeLog]:
    """Aggregation change logs (filtered by playbook_name and/or agent_version), newest first."""
    model = PlaybookAggregationChangeLog
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if playbook_name is not None:
        stmt = stmt.where(model.playbook_name == require_text(playbook_name, "playbook_name"))
    if agent_version is not None:
        stmt = stmt.where(model.agent_version == require_text(agent_version, "agent_version"))
    return list(session.scalars(_page(stmt, limit, offset)))


# -- playbook optimization ------------------------------------------------------------------


@dataclass
class OptimizationJobDetail:
    """A job with its candidates (oldest first) and each candidate's evaluations."""

    job: PlaybookOptimizationJob
    candidates: list[PlaybookOptimizationCandidate]
    evaluations: dict[int, list[PlaybookOptimizationEvaluation]] = field(default_factory=dict)


def _job_or_raise(session: Session, job_id: int) -> PlaybookOptimizationJob:
    job = session.get(PlaybookOptimizationJob, _check_id(job_id, "job_id"))
    if job is None:
        raise NotFoundError(f"No playbook optimization job with id {job_id}; create it first.")
    return job


def create_optimization_job(
    session: Session,
    *,
    playbook_name: str | None = None,
    agent_version: str | None = None,
    config: Mapping[str, Any] | None = None,
    status: str = "pending",
) -> PlaybookOptimizationJob:
    job = PlaybookOptimizationJob(
        playbook_name=optional_text(playbook_name, "playbook_name"),
        agent_version=optional_text(agent_version, "agent_version"),
        config=_json(config, "config", kind=dict),
        status=require_text(status, "status"),
    )
    session.add(job)
    session.flush()
    return job


def update_optimization_job(
    session: Session,
    job_id: int,
    *,
    status: str | None = None,
    result: Mapping[str, Any] | None = None,
) -> PlaybookOptimizationJob:
    """Set a job's status and/or result (None leaves a field unchanged)."""
    new_status = None if status is None else require_text(status, "status")
    new_result = _json(result, "result", kind=dict)
    job = _job_or_raise(session, job_id)
    if new_status is not None:
        job.status = new_status
    if new_result is not None:
        job.result = new_result
    session.flush()
    return job


def add_optimization_candidate(
    session: Session,
    job_id: int,
    content: str,
    *,
    candidate_metadata: Mapping[str, Any] | None = None,
    score: float | None = None,
) -> PlaybookOptimizationCandidate:
    row = PlaybookOptimizationCandidate(
        job_id=_check_id(job_id, "job_id"),
        content=require_text(content, "content"),
        candidate_metadata=_json(candidate_metadata, "candidate_metadata", kind=dict),
        score=_optional_score(score),
    )
    _job_or_raise(session, job_id)
    session.add(row)
    session.flush()
    return row


def add_optimization_evaluation(
    session: Session,
    candidate_id: int,
    *,
    score: float | None = None,
    details: Mapping[str, Any] | None = None,
) -> PlaybookOptimizationEvaluation:
    row = PlaybookOptimizationEvaluation(
        candidate_id=_check_id(candidate_id, "candidate_id"),
        score=_optional_score(score),
        details=_json(details, "details", kind=dict),
    )
    if session.get(PlaybookOptimizationCandidate, candidate_id) is None:
        raise NotFoundError(
            f"No playbook optimization candidate with id {candidate_id}; add it first."
        )
    session.add(row)
    session.flush()
    return row


def add_optimization_event(
    session: Session,
    job_id: int,
    event_type: str,
    payload: Mapping[str, Any] | None = None,
) -> PlaybookOptimizationEvent:
    row = PlaybookOptimizationEvent(
        job_id=_check_id(job_id, "job_id"),
        event_type=require_text(event_type, "event_type"),
        payload=_json(payload, "payload", kind=dict),
    )
    _job_or_raise(session, job_id)
    session.add(row)
    session.flush()
    return row


def list_optimization_events(
    session: Session,
    job_id: int,
    *,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[PlaybookOptimizationEvent]:
    """A job's events, newest first."""
    model = PlaybookOptimizationEvent
    stmt = (
        select(model)
        .where(model.job_id == _check_id(job_id, "job_id"))
        .order_by(model.created_at.desc(), model.id.desc())
    )
    return list(session.scalars(_page(stmt, limit, offset)))


def get_optimization_job(
    session: Session, job_id: int, *, consistency: Consistency = "eventual"
) -> OptimizationJobDetail | None:
    """The job with its candidates and their evaluations, or None."""
    job = session.get(PlaybookOptimizationJob, _check_id(job_id, "job_id"))
    if job is None:
        return None
    candidates = list(
        session.scalars(
            select(PlaybookOptimizationCandidate)
            .where(PlaybookOptimizationCandidate.job_id == job.id)
            .order_by(PlaybookOptimizationCandidate.created_at, PlaybookOptimizationCandidate.id)
        )
    )
    evaluations: dict[int, list[PlaybookOptimizationEvaluation]] = {c.id: [] for c in candidates}
    if candidates:
        ev = PlaybookOptimizationEvaluation
        for row in session.scalars(
            select(ev)
            .join(
                PlaybookOptimizationCandidate, PlaybookOptimizationCandidate.id == ev.candidate_id
            )
            .where(PlaybookOptimizationCandidate.job_id == job.id)
            .order_by(ev.created_at, ev.id)
        ):
            evaluations[row.candidate_id].append(row)
    return OptimizationJobDetail(job, candidates, evaluations)


def list_optimization_jobs(
    session: Session,
    *,
    status: str | None = None,
    limit: int | None = DEFAULT_LIMIT,
    offset: int = 0,
    consistency: Consistency = "eventual",
) -> list[PlaybookOptimizationJob]:
    """Jobs (with one status when given), newest first."""
    model = PlaybookOptimizationJob
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if status is not None:
        stmt = stmt.where(model.status == require_text(status, "status"))
    return list(session.scalars(_page(stmt, limit, offset)))


def delete_optimization_job(session: Session, job_id: int) -> bool:
    """Delete a job; its events, candidates and the candidates' evaluations go with it."""
    stmt = delete(PlaybookOptimizationJob).where(
        PlaybookOptimizationJob.id == _check_id(job_id, "job_id")
    )
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


# -- share links ----------------------------------------------------------------------------


MAX_SHARE_LINK_TTL_SECONDS = 10 * 365 * 24 * 60 * 60


def _check_ttl(ttl: Any) -> timedelta:
    if isinstance(ttl, timedelta):
        seconds = ttl.total_seconds()
    elif isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
        seconds = float(ttl)
    else:
        raise ValidationError("ttl must be a timedelta or a number of seconds.")
    if not math.isfinite(seconds) or seconds <= 0 or seconds > MAX_SHARE_LINK_TTL_SECONDS:
        raise ValidationError(
            f"ttl must be between 0 and {MAX_SHARE_LINK_TTL_SECONDS} seconds (10 years), "
            f"got {seconds:g}."
        )
    return timedelta(seconds=seconds)


def create_share_link(
    session: Session,
    resource_type: str,
    resource_id: str,
    *,
    expires_at: datetime | None = None,
    ttl: timedelta | float | None = None,
) -> IssuedSecret[ShareLink]:
    """Create a share link. `.token` is the plain token, returned only here (the database keeps
    its SHA-256 hash); `.record` is the ShareLink. Give `expires_at` (aware) or `ttl`, or
    neither for a link that never expires."""
    resource_type = require_text(resource_type, "resource_type")
    resource_id = require_text(resource_id, "resource_id")
    if expires_at is not None and ttl is not None:
        raise ValidationError("Give expires_at or ttl, not both.")
    if ttl is not None:
        expires_at = datetime.now(UTC) + _check_ttl(ttl)
    else:
        expires_at = require_aware(expires_at, "expires_at")
    token = new_token()
    link = ShareLink(
        token_hash=hash_token(token),
        resource_type=resource_type,
        resource_id=resource_id,
        expires_at=expires_at,
    )
    session.add(link)
    session.flush()
    return IssuedSecret(link, token)


def _not_expired(now: datetime) -> Any:
    return or_(ShareLink.expires_at.is_(None), ShareLink.expires_at > now)


def resolve_share_link(
    session: Session, token: str, *, consistency: Consistency = "eventual"
) -> ShareLink | None:
    """The link for a plain token, or None when unknown or expired."""
    token = check_token(token, "share link token")
    now = datetime.now(UTC)
    return session.scalars(
        select(ShareLink).where(ShareLink.token_hash == hash_token(token), _not_expired(now))
    ).first()


def list_share_links(
    session: Session,
    resource_type: str,
    resource_id: str,
    *,
    include_expired: bool = False,
    consistency: Consistency = "eventual",
) -> list[ShareLink]:
    """Links to one resource, newest first (live ones only unless include_expired)."""
    stmt = (
        select(ShareLink)
        .where(
            ShareLink.resource_type == require_text(resource_type, "resource_type"),
            ShareLink.resource_id == require_text(resource_id, "resource_id"),
        )
        .order_by(ShareLink.created_at.desc(), ShareLink.token_hash)
    )
    if not include_expired:
        stmt = stmt.where(_not_expired(datetime.now(UTC)))
    return list(session.scalars(stmt))


def delete_share_link(session: Session, token: str) -> bool:
    """Delete the link of a plain token; True if it existed."""
    token = check_token(token, "share link token")
    stmt = delete(ShareLink).where(ShareLink.token_hash == hash_token(token))
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


def delete_expired_share_links(session: Session) -> int:
    """Delete every expired link; returns how many."""
    stmt = delete(ShareLink).where(ShareLink.expires_at <= datetime.now(UTC))
    return _rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


class RecordOperations:
    save_evaluation_result = write(save_evaluation_result)
    get_evaluation_results = read(get_evaluation_results)
    list_evaluation_results = read(list_evaluation_results)

    add_profile_change_log = write(add_profile_change_log)
    list_profile_change_logs = read(list_profile_change_logs)
    add_playbook_aggregation_change_log = write(add_playbook_aggregation_change_log)
    list_playbook_aggregation_change_logs = read(list_playbook_aggregation_change_logs)

    create_optimization_job = write(create_optimization_job)
    update_optimization_job = write(update_optimization_job)
    add_optimization_candidate = write(add_optimization_candidate)
    add_optimization_evaluation = write(add_optimization_evaluation)
    add_optimization_event = write(add_optimization_event)
    list_optimization_events = read(list_optimization_events)
    list_optimization_jobs = read(list_optimization_jobs)
    get_optimization_job = read(get_optimization_job)
    delete_optimization_job = write(delete_optimization_job)

    create_share_link = write(create_share_link)
    resolve_share_link = read(resolve_share_link)
    list_share_links = read(list_share_links)
    delete_share_link = write(delete_share_link)
    delete_expired_share_links = write(delete_expired_share_links)
