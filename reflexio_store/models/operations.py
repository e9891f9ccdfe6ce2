from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from reflexio_store.models.base import Base, CreatedAt, IntPK, UpdatedAt
from reflexio_store.types import BigIntPK


class OperationState(Base):
    """Per-service state; also a lease lock (owner, expires_at)."""

    __tablename__ = "operation_states"

    service_name: Mapped[str] = mapped_column(Text, primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(default=dict)
    owner: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class PlaybookOptimizationJob(Base):
    __tablename__ = "playbook_optimization_jobs"

    id: Mapped[IntPK]
    playbook_name: Mapped[str | None] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, default="pending")
    config: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    __table_args__ = (Index(None, "status", "created_at"), Index(None, "created_at"))


class PlaybookOptimizationCandidate(Base):
    __tablename__ = "playbook_optimization_candidates"

    id: Mapped[IntPK]
    job_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("playbook_optimization_jobs.id", ondelete="CASCADE")
    )
    content: Mapped[str] = mapped_column(Text)
    candidate_metadata: Mapped[dict[str, Any] | None]
    score: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "job_id", "created_at"),)


class PlaybookOptimizationEvaluation(Base):
    __tablename__ = "playbook_optimization_evaluations"

    id: Mapped[IntPK]
    candidate_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("playbook_optimization_candidates.id", ondelete="CASCADE")
    )
    score: Mapped[float | None] = mapped_column(Float)
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "candidate_id", "created_at"),)


class PlaybookOptimizationEvent(Base):
    __tablename__ = "playbook_optimization_events"

    id: Mapped[IntPK]
    job_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("playbook_optimization_jobs.id", ondelete="CASCADE")
    )
    event_type: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None]
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "job_id", "created_at"), Index(None, "created_at"))
