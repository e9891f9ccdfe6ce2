"""The status lifecycle of memory entities: promote, archive, restore.

Generation writes new rows as ``pending``; `promote` then archives the scope's ``current`` rows
and makes its ``pending`` rows ``current`` in one transaction, so a failed generation leaves
the previous current rows untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from reflexio_store.dialect import transaction_lock
from reflexio_store.enums import Status
from reflexio_store.store.crud import set_status
from reflexio_store.store.rows import EntityKind, chunks


@dataclass(frozen=True)
class Promotion:
    """What `promote_pending_*` did: rows archived (were current) and promoted (were pending)."""

    archived: int
    promoted: int


def archive_current(
    session: Session, kind: EntityKind[Any], scope: list[ColumnElement[bool]]
) -> int:
    """Step 1 of a promotion: the scope's current rows become archived."""
    model: Any = kind.model
    return set_status(session, kind, [*scope, model.status == Status.CURRENT], Status.ARCHIVED)


def activate_pending(
    session: Session, kind: EntityKind[Any], scope: list[ColumnElement[bool]]
) -> int:
    """Step 2 of a promotion: the scope's pending rows become current."""
    model: Any = kind.model
    return set_status(session, kind, [*scope, model.status == Status.PENDING], Status.CURRENT)


def promote(
    session: Session,
    kind: EntityKind[Any],
    scope: list[ColumnElement[bool]],
    scope_key: Sequence[str | None],
) -> Promotion:
    """Atomically, within `scope`: current → archived, pending → current.

    No pending rows: nothing changes (archiving would leave the scope empty). `scope_key` names
    the scope for the lock that serialises concurrent promotions of it.
    """
    # Concurrent promotions of one scope wait for each other (until commit or rollback).
    transaction_lock(session, "reflexio_store.promote", kind.model.__tablename__, *scope_key)
    model: Any = kind.model
    has_pending = session.execute(
        select(exists().where(*scope, model.status == Status.PENDING))
    ).scalar_one()
    if not has_pending:
        return Promotion(archived=0, promoted=0)
    archived = archive_current(session, kind, scope)
    promoted = activate_pending(session, kind, scope)
    return Promotion(archived=archived, promoted=promoted)


def archive_by_ids(session: Session, kind: EntityKind[Any], ids: Sequence[Any]) -> int:
    """Set these rows to archived; return how many changed."""
    model: Any = kind.model
    return sum(
        set_status(
            session,
            kind,
            [kind.key_column.in_(part), model.status != Status.ARCHIVED],
            Status.ARCHIVED,
        )
        for part in chunks(kind.ids(ids))
    )


def restore_by_ids(session: Session, kind: EntityKind[Any], ids: Sequence[Any]) -> int:
    """Set these archived rows back to current; return how many changed."""
    model: Any = kind.model
    return sum(
        set_status(
            session,
            kind,
            [kind.key_column.in_(part), model.status == Status.ARCHIVED],
            Status.CURRENT,
        )
        for part in chunks(kind.ids(ids))
    )
