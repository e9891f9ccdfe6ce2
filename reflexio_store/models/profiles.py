from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Index, Text
from sqlalchemy.orm import Mapped, mapped_column

from reflexio_store.enums import Status
from reflexio_store.models.base import (
    Base,
    CreatedAt,
    IntPK,
    fulltext_index,
    hnsw_index,
    search_vector_column,
)


class Profile(Base):
    """A fact about one user, generated from their requests."""

    __tablename__ = "profiles"

    # A surrogate integer key keeps full-text rowids stable on SQLite (a text key would not).
    id: Mapped[IntPK]
    profile_id: Mapped[str] = mapped_column(Text, unique=True)
    user_id: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    custom_features: Mapped[dict[str, Any] | None]
    extractor_names: Mapped[list[Any]] = mapped_column(default=list)
    source: Mapped[str | None] = mapped_column(Text)
    status: Mapped[Status] = mapped_column(default=Status.CURRENT)
    generated_from_request_id: Mapped[str | None] = mapped_column(Text)
    profile_time_to_live: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    last_modified_at: Mapped[datetime | None]
    expanded_terms: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    embedding: Mapped[Sequence[float] | None]
    created_at: Mapped[CreatedAt]
    search_vector: Mapped[str | None] = search_vector_column("content", "expanded_terms")

    __table_args__ = (
        Index(None, "user_id", "status", "created_at"),
        Index(None, "status"),
        Index(None, "expires_at"),
        Index(None, "created_at"),
        hnsw_index("profiles"),
        fulltext_index("profiles"),
    )
