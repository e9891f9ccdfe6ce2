"""Share links to a resource. The plain token is returned once by `create_share_link`; only its
SHA-256 hash is stored; `resolve_share_link` honours expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from reflexio_store.errors import ValidationError
from reflexio_store.models import ShareLink
from reflexio_store.security import IssuedSecret, check_token, hash_token, new_token
from reflexio_store.store._operation import read, write
from reflexio_store.store.crud import rowcount
from reflexio_store.validation import duration, optional_aware, require_bool, require_key

MAX_SHARE_LINK_TTL_SECONDS = 10 * 365 * 24 * 60 * 60


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
    resource_type = require_key(resource_type, "resource_type")
    resource_id = require_key(resource_id, "resource_id")
    if expires_at is not None and ttl is not None:
        raise ValidationError("Give expires_at or ttl, not both.")
    if ttl is not None:
        expires_at = datetime.now(UTC) + duration(ttl, "ttl", MAX_SHARE_LINK_TTL_SECONDS)
    else:
        expires_at = optional_aware(expires_at, "expires_at")
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


def resolve_share_link(session: Session, token: str) -> ShareLink | None:
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
) -> list[ShareLink]:
    """Links to one resource, newest first (live ones only unless include_expired)."""
    stmt = (
        select(ShareLink)
        .where(
            ShareLink.resource_type == require_key(resource_type, "resource_type"),
            ShareLink.resource_id == require_key(resource_id, "resource_id"),
        )
        .order_by(ShareLink.created_at.desc(), ShareLink.token_hash)
    )
    if not require_bool(include_expired, "include_expired"):
        stmt = stmt.where(_not_expired(datetime.now(UTC)))
    return list(session.scalars(stmt))


def delete_share_link(session: Session, token: str) -> bool:
    """Delete the link of a plain token; True if it existed."""
    token = check_token(token, "share link token")
    stmt = delete(ShareLink).where(ShareLink.token_hash == hash_token(token))
    return rowcount(session.execute(stmt, execution_options={"synchronize_session": False})) > 0


def delete_expired_share_links(session: Session) -> int:
    """Delete every expired link; returns how many."""
    stmt = delete(ShareLink).where(ShareLink.expires_at <= datetime.now(UTC))
    return rowcount(session.execute(stmt, execution_options={"synchronize_session": False}))


class ShareLinkOperations:
    create_share_link = write(create_share_link)
    resolve_share_link = read(resolve_share_link)
    list_share_links = read(list_share_links)
    delete_share_link = write(delete_share_link)
    delete_expired_share_links = write(delete_expired_share_links)
