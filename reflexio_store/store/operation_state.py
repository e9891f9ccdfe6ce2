"""Operation state (per-service JSON) and lease locks, both in `operation_states`.

A lock is a lease: (owner, expires_at) on the row named after the lock. Taking it is ONE
statement on both databases:

    INSERT INTO operation_states (...) VALUES (...)
    ON CONFLICT (service_name) DO UPDATE SET owner = :owner, expires_at = :expires_at, ...
    WHERE operation_states.owner IS NULL OR operation_states.expires_at < :now
       OR operation_states.owner = :owner
    RETURNING owner

so two workers can never both hold it (PostgreSQL locks the conflicting row and re-checks the
WHERE against its latest version; SQLite writers are serialised by BEGIN IMMEDIATE). The caller
got the lock iff a row came back. `now` is computed once per call in UTC.

The state column and the lease columns are written independently: saving state never touches
a lease, and taking a lease never touches the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, or_, select, update
from sqlalchemy.orm import Session

from reflexio_store.dialect import insert_or_update
from reflexio_store.models import OperationState
from reflexio_store.store._operation import fresh, write
from reflexio_store.store.crud import rowcount
from reflexio_store.validation import duration, json_object, require_key

_table = cast(Table, OperationState.__table__)
_c = _table.c


def _check_state(state: Any) -> dict[str, Any]:
    return json_object(state, "state")


MAX_TTL_SECONDS = 10 * 365 * 24 * 60 * 60
"""Longest lease accepted by try_acquire_lock / renew_lock: 10 years."""


# -- state -----------------------------------------------------------------------------------


def get_operation_state(session: Session, service_name: str) -> dict[str, Any] | None:
    """The JSON state saved for `service_name`, or None if there is none."""
    service_name = require_key(service_name, "service_name")
    row = session.execute(select(_c.state).where(_c.service_name == service_name)).first()
    return None if row is None else dict(row[0] or {})


def upsert_operation_state(
    session: Session, service_name: str, state: Mapping[str, Any]
) -> dict[str, Any]:
    """Create or replace the state of `service_name` (one statement; leases untouched)."""
    service_name = require_key(service_name, "service_name")
    value = _check_state(state)
    now = datetime.now(UTC)
    stmt = insert_or_update(session, _table, ["service_name"], ["state", "updated_at"]).values(
        service_name=service_name, state=value, created_at=now, updated_at=now
    )
    session.execute(stmt)
    return value


def delete_operation_state(session: Session, service_name: str) -> bool:
    """Delete the row of `service_name` (its state and any lease on it). True if it existed."""
    service_name = require_key(service_name, "service_name")
    return rowcount(session.execute(delete(_table).where(_c.service_name == service_name))) > 0


# -- lease locks -----------------------------------------------------------------------------


def try_acquire_lock(session: Session, name: str, owner: str, ttl_seconds: float) -> bool:
    """Take (or, if `owner` already holds it, extend) the lease `name` for `ttl_seconds`.

    True iff `owner` holds the lease afterwards. A lease whose expires_at has passed can be
    taken over by anyone. Atomic: one INSERT ... ON CONFLICT DO UPDATE ... WHERE ... RETURNING.
    """
    name = require_key(name, "name")
    owner = require_key(owner, "owner")
    ttl = duration(ttl_seconds, "ttl_seconds", MAX_TTL_SECONDS)
    now = datetime.now(UTC)
    expires_at = now + ttl
    lease_is_free = or_(_c.owner.is_(None), _c.expires_at < now, _c.owner == owner)
    stmt = (
        insert_or_update(
            session,
            _table,
            ["service_name"],
            ["owner", "expires_at", "updated_at"],
            where=lease_is_free,
        )
        .values(
            service_name=name,
            state={},
            owner=owner,
            expires_at=expires_at,
            created_at=now,
            updated_at=now,
        )
        .returning(_c.owner)
    )
    got = session.execute(stmt).scalar()
    return got == owner


def renew_lock(session: Session, name: str, owner: str, ttl_seconds: float) -> bool:
    """Extend a lease `owner` still holds to now + ttl_seconds. False if another owner has it
    (or nobody does): the caller must then stop work that relied on the lease."""
    name = require_key(name, "name")
    owner = require_key(owner, "owner")
    ttl = duration(ttl_seconds, "ttl_seconds", MAX_TTL_SECONDS)
    now = datetime.now(UTC)
    stmt = (
        update(_table)
        .where(_c.service_name == name, _c.owner == owner)
        .values(expires_at=now + ttl, updated_at=now)
    )
    return rowcount(session.execute(stmt)) > 0


def release_lock(session: Session, name: str, owner: str) -> bool:
    """Release the lease if `owner` holds it. False (and the lease untouched) otherwise."""
    name = require_key(name, "name")
    owner = require_key(owner, "owner")
    now = datetime.now(UTC)
    stmt = (
        update(_table)
        .where(_c.service_name == name, _c.owner == owner)
        .values(owner=None, expires_at=None, updated_at=now)
    )
    return rowcount(session.execute(stmt)) > 0


def get_lock_owner(session: Session, name: str) -> str | None:
    """Who holds the lease `name` now (None when free or expired)."""
    name = require_key(name, "name")
    now = datetime.now(UTC)
    owner: str | None = session.scalar(
        select(_c.owner).where(_c.service_name == name, _c.expires_at >= now)
    )
    return owner


class OperationStateOperations:
    get_operation_state = fresh(get_operation_state)
    upsert_operation_state = write(upsert_operation_state)
    delete_operation_state = write(delete_operation_state)
    try_acquire_lock = write(try_acquire_lock)
    renew_lock = write(renew_lock)
    release_lock = write(release_lock)
    get_lock_owner = fresh(get_lock_owner)
