from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Index, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from reflexio_store.models.base import Base, CreatedAt, IntPK, hnsw_index


class AgentSuccessEvaluationResult(Base):
    """How one session went for an agent; one row per (session, evaluation name)."""

    __tablename__ = "agent_success_evaluation_results"

    id: Mapped[IntPK]
    session_id: Mapped[str] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    evaluation_name: Mapped[str] = mapped_column(Text)
    is_success: Mapped[bool | None]
    failure_type: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    regular_vs_shadow: Mapped[str | None] = mapped_column(Text)
    number_of_correction_per_session: Mapped[int | None]
    user_turns_to_resolution: Mapped[int | None]
    is_escalated: Mapped[bool | None]
    embedding: Mapped[Sequence[float] | None]
    created_at: Mapped[CreatedAt]

    __table_args__ = (
        UniqueConstraint("session_id", "evaluation_name"),
        Index(None, "agent_version", "created_at"),
        Index(None, "created_at"),
        hnsw_index("agent_success_evaluation_results"),
    )


class ProfileChangeLog(Base):
    """What one generation run added, removed and mentioned in a user's profiles."""

    __tablename__ = "profile_change_logs"

    id: Mapped[IntPK]
    request_id: Mapped[str | None] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    added_profiles: Mapped[list[Any]] = mapped_column(default=list)
    removed_profiles: Mapped[list[Any]] = mapped_column(default=list)
    mentioned_profiles: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "user_id", "created_at"), Index(None, "created_at"))


class PlaybookAggregationChangeLog(Base):
    """Agent playbooks before and after one aggregation run."""

    __tablename__ = "playbook_aggregation_change_logs"

    id: Mapped[IntPK]
    playbook_name: Mapped[str | None] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    before: Mapped[list[Any]] = mapped_column(default=list)
    after: Mapped[list[Any]] = mapped_column(default=list)
    run_mode: Mapped[str | None] = mapped_column(Text)  # revision 0005
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "playbook_name", "agent_version"), Index(None, "created_at"))
