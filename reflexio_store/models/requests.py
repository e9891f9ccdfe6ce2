from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reflexio_store.models.base import (
    Base,
    CreatedAt,
    IntPK,
    fulltext_index,
    hnsw_index,
    search_vector_column,
)


class Request(Base):
    """One agent turn or session step published by an application."""

    __tablename__ = "requests"

    request_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str] = mapped_column(Text)
    session_id: Mapped[str | None] = mapped_column(Text)
    agent_version: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]

    interactions: Mapped[list[Interaction]] = relationship(
        back_populates="request",
        cascade="all, delete-orphan",
        passive_deletes=True,
        order_by="Interaction.interaction_id",
    )

    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "session_id", "created_at"),
        Index(None, "created_at"),
    )


class Interaction(Base):
    """A message, tool call or user action inside a request."""

    __tablename__ = "interactions"

    interaction_id: Mapped[IntPK]
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.request_id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text, default="")
    user_action: Mapped[str | None] = mapped_column(Text)
    user_action_description: Mapped[str | None] = mapped_column(Text)
    interacted_image_url: Mapped[str | None] = mapped_column(Text)
    shadow_content: Mapped[str | None] = mapped_column(Text)
    expert_content: Mapped[str | None] = mapped_column(Text)
    tools_used: Mapped[list[Any]] = mapped_column(default=list)
    embedding: Mapped[Sequence[float] | None]
    created_at: Mapped[CreatedAt]
    search_vector: Mapped[str | None] = search_vector_column("content")

    request: Mapped[Request] = relationship(back_populates="interactions")

    __table_args__ = (
        Index(None, "user_id", "created_at"),
        Index(None, "request_id"),
        Index(None, "created_at"),
        hnsw_index("interactions"),
        fulltext_index("interactions"),
    )


__all__ = ["Interaction", "Request"]
