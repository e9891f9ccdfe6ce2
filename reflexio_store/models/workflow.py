from __future__ import annotations

from typing import Any

from sqlalchemy import Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from reflexio_store.models.base import Base, CreatedAt, UpdatedAt, pg_only


class WorkflowRun(Base):
    """Persistent state of one workflow run (seed 002's state backend)."""

    __tablename__ = "workflow_runs"

    run_id: Mapped[str] = mapped_column(Text, primary_key=True)
    pipeline_id: Mapped[str | None] = mapped_column(Text)
    pipeline_name: Mapped[str | None] = mapped_column(Text)
    pipeline_version: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    current_step_index: Mapped[int] = mapped_column(default=0)
    total_steps: Mapped[int] = mapped_column(default=0)
    pipeline_context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # `metadata` is reserved on declarative classes; the column keeps its public name.
    run_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    __table_args__ = (
        Index(None, "status", "created_at"),
        Index(None, "pipeline_id", "created_at"),
        Index(None, "pipeline_name", "created_at"),
        Index(None, "created_at", "run_id"),
        Index(None, "updated_at"),
        pg_only(Index("ix_workflow_runs_metadata_gin", "metadata", postgresql_using="gin")),
    )
