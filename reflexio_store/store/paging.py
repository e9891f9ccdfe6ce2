"""Pagination: the limit and offset rules, and newest-first pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import Select

from reflexio_store.store.rows import EntityKind, M
from reflexio_store.validation import page

DEFAULT_LIMIT = 100

S = TypeVar("S", bound=Select[Any])


def paginate(stmt: S, limit: int | None, offset: int) -> S:
    """`stmt` with LIMIT/OFFSET applied after the one page rule (validation.page); limit None
    means every row."""
    limit, offset = page(limit, offset, unlimited=True)
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    return stmt


def newest_first(
    session: Session,
    kind: EntityKind[M],
    where: Sequence[ColumnElement[bool]],
    limit: int,
    offset: int,
) -> list[M]:
    """One page of `kind` rows matching `where`, newest first (created_at, then key)."""
    limit, offset = page(limit, offset)
    statement = (
        select(kind.model)
        .where(*where)
        .order_by(kind.column("created_at").desc(), kind.order_key.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(session.scalars(statement).all())
