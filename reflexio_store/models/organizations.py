from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from reflexio_store.models.base import Base, CreatedAt, IntPK, UpdatedAt
from reflexio_store.types import BigIntPK


class Organization(Base):
    """A login account and its settings. The password is stored only as a scrypt hash."""

    __tablename__ = "organizations"

    id: Mapped[IntPK]
    login: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    password_hash: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(default=True)
    configuration_json: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]

    api_tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="organization", cascade="all, delete-orphan", passive_deletes=True
    )

    def __repr__(self) -> str:
        return f"Organization(id={self.id!r}, login={self.login!r}, is_active={self.is_active!r})"


class ApiToken(Base):
    """An API token of an organization, kept only as its SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[IntPK]
    organization_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("organizations.id", ondelete="CASCADE")
    )
    token_hash: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    last_used_at: Mapped[datetime | None]
    created_at: Mapped[CreatedAt]

    organization: Mapped[Organization] = relationship(back_populates="api_tokens")

    __table_args__ = (Index(None, "organization_id"),)

    def __repr__(self) -> str:
        return f"ApiToken(id={self.id!r}, organization_id={self.organization_id!r})"


class ShareLink(Base):
    """A link to a resource; the token is stored as its SHA-256 hash."""

    __tablename__ = "share_links"

    token_hash: Mapped[str] = mapped_column(Text, primary_key=True)
    resource_type: Mapped[str] = mapped_column(Text)
    resource_id: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None]
    created_at: Mapped[CreatedAt]

    __table_args__ = (Index(None, "resource_type", "resource_id"), Index(None, "expires_at"))

    def __repr__(self) -> str:
        return f"ShareLink(resource_type={self.resource_type!r}, resource_id={self.resource_id!r})"
