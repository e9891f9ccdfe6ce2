from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.models.base import (
    Base,
    CreatedAt,
    IntPK,
    fulltext_index,
    hnsw_index,
    search_vector_column,
)
from reflexio_store.types import BigIntPK


class UserPlaybook(Base):
    """A lesson learned from one user's corrections."""

    __tablename__ = "user_playbooks"

    user_playbook_id: Mapped[IntPK]
    user_id: Mapped[str | None] = mapped_column(Text)
    playbook_name: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str | None] = mapped_column(Text)
    rationale: Mapped[str | None] = mapped_column(Text)
    blocking_issue: Mapped[dict[str, Any] | None]
    source_interaction_ids: Mapped[list[Any]] = mapped_column(default=list)
    # Reflexio's structured data beyond trigger / rationale / blocking_issue (revision 0005).
    structured_data: Mapped[dict[str, Any] | None]
    status: Mapped[Status] = mapped_column(default=Status.CURRENT)
    source: Mapped[str | None] = mapped_column(Text)
    expanded_terms: Mapped[str | None] = mapped_column(Text)
    embedding: Mapped[Sequence[float] | None]
    created_at: Mapped[CreatedAt]
    search_vector: Mapped[str | None] = search_vector_column("content", "trigger", "expanded_terms")

    __table_args__ = (
        Index(None, "user_id", "status", "created_at"),
        Index(None, "playbook_name", "agent_version"),
        Index(None, "status"),
        Index(None, "created_at"),
        hnsw_index("user_playbooks"),
        fulltext_index("user_playbooks"),
    )


class AgentPlaybook(Base):
    """A lesson aggregated across users, reviewed before agents use it."""

    __tablename__ = "agent_playbooks"

    agent_playbook_id: Mapped[IntPK]
    playbook_name: Mapped[str] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    trigger: Mapped[str | None] = mapped_column(Text)
    rationale: Mapped[str | None] = mapped_column(Text)
    blocking_issue: Mapped[dict[str, Any] | None]
    playbook_status: Mapped[PlaybookReviewStatus] = mapped_column(
        default=PlaybookReviewStatus.PENDING
    )
    playbook_metadata: Mapped[dict[str, Any] | None]
    structured_data: Mapped[dict[str, Any] | None]
    status: Mapped[Status] = mapped_column(default=Status.CURRENT)
    source: Mapped[str | None] = mapped_column(Text)
    expanded_terms: Mapped[str | None] = mapped_column(Text)
    embedding: Mapped[Sequence[float] | None]
    created_at: Mapped[CreatedAt]
    search_vector: Mapped[str | None] = search_vector_column("content", "trigger", "expanded_terms")

    __table_args__ = (
        Index(None, "playbook_name", "agent_version"),
        Index(None, "status"),
        Index(None, "playbook_status"),
        Index(None, "created_at"),
        hnsw_index("agent_playbooks"),
        fulltext_index("agent_playbooks"),
    )


class AgentPlaybookSource(Base):
    """Which user playbooks an agent playbook was aggregated from."""

    __tablename__ = "agent_playbook_sources"

    agent_playbook_id: Mapped[int] = mapped_column(
        BigIntPK,
        ForeignKey("agent_playbooks.agent_playbook_id", ondelete="CASCADE"),
        primary_key=True,
    )
    user_playbook_id: Mapped[int] = mapped_column(
        BigIntPK,
        ForeignKey("user_playbooks.user_playbook_id", ondelete="CASCADE"),
        primary_key=True,
    )

    __table_args__ = (Index(None, "user_playbook_id"),)
