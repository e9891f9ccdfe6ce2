"""Playbook optimization: jobs, their candidates, the candidates' evaluations, and job events.

Deleting a job deletes its events and candidates, and the candidates' evaluations, through
ON DELETE CASCADE in the database (SQLite runs with foreign_keys=ON). Events list newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from reflexio_store.errors import NotFoundError
from reflexio_store.models import (
    PlaybookOptimizationCandidate,
    PlaybookOptimizationEvaluation,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
)
from reflexio_store.store._operation import read, write
from reflexio_store.store.crud import rowcount
from reflexio_store.store.paging import DEFAULT_LIMIT, paginate
from reflexio_store.validation import (
    FLOAT_MAX,
    filter_key,
    optional_json_object,
    optional_key,
    optional_number,
    require_int_id,
    require_key,
    require_text,
)


@dataclass
class OptimizationJobDetail:
    """A job with its candidates (oldest first) and each candidate's evaluations."""

    job: PlaybookOptimizationJob
    candidates: list[PlaybookOptimizationCandidate]
    evaluations: dict[int, list[PlaybookOptimizationEvaluation]] = field(default_factory=dict)


def _job_or_raise(session: Session, job_id: int) -> PlaybookOptimizationJob:
    job = session.get(PlaybookOptimizationJob, require_int_id(job_id, "job_id"))
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
        playbook_name=optional_key(playbook_name, "playbook_name"),
        agent_version=optional_key(agent_version, "agent_version"),
        config=optional_json_object(config, "config"),
        status=require_key(status, "status"),
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
    new_status = optional_key(status, "status")
    new_result = optional_json_object(result, "result")
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
        job_id=require_int_id(job_id, "job_id"),
        content=require_text(content, "content"),
        candidate_metadata=optional_json_object(candidate_metadata, "candidate_metadata"),
        score=optional_number(score, "score", -FLOAT_MAX, FLOAT_MAX),
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
        candidate_id=require_int_id(candidate_id, "candidate_id"),
        score=optional_number(score, "score", -FLOAT_MAX, FLOAT_MAX),
        details=optional_json_object(details, "details"),
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
        job_id=require_int_id(job_id, "job_id"),
        event_type=require_key(event_type, "event_type"),
        payload=optional_json_object(payload, "payload"),
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
) -> list[PlaybookOptimizationEvent]:
    """A job's events, newest first."""
    model = PlaybookOptimizationEvent
    stmt = (
        select(model)
        .where(model.job_id == require_int_id(job_id, "job_id"))
        .order_by(model.created_at.desc(), model.id.desc())
    )
    return list(session.scalars(paginate(stmt, limit, offset)))


def get_optimization_job(session: Session, job_id: int) -> OptimizationJobDetail | None:
    """The job with its candidates and their evaluations, or None."""
    job = session.get(PlaybookOptimizationJob, require_int_id(job_id, "job_id"))
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
) -> list[PlaybookOptimizationJob]:
    """Jobs (with one status when given), newest first."""
    model = PlaybookOptimizationJob
    stmt = select(model).order_by(model.created_at.desc(), model.id.desc())
    if status is not None:
        stmt = stmt.where(model.status == filter_key(status, "status"))
    return list(session.scalars(paginate(stmt, limit, offset)))


def delete_optimization_job(session: Session, job_id: int) -> bool:
    """Delete a job; its events, candidates and the candidates' evaluations go with it."""
    stmt = delete(PlaybookOptimizationJob).where(
        PlaybookOptimizationJob.id == require_int_id(job_id, "job_id")
    )
    return rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


class OptimizationOperations:
    create_optimization_job = write(create_optimization_job)
    update_optimization_job = write(update_optimization_job)
    add_optimization_candidate = write(add_optimization_candidate)
    add_optimization_evaluation = write(add_optimization_evaluation)
    add_optimization_event = write(add_optimization_event)
    list_optimization_events = read(list_optimization_events)
    list_optimization_jobs = read(list_optimization_jobs)
    get_optimization_job = read(get_optimization_job)
    delete_optimization_job = write(delete_optimization_job)
